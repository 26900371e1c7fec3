// The node front end over TLS (listen.tls, the default front end): the same behaviour as
// over plain HTTP, test/helpers/front-end-suite.ts.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCertificate } from '../../bench/lib/certificate.js';
import { frontEndSuite } from '../helpers/front-end-suite.js';

// Replica ports 18680-18689 belong to this file.
frontEndSuite({ tls: selfSignedCertificate(mkdtempSync(join(tmpdir(), 'sluice-front-end-tls-')), 'front-end-tls'), ports: { from: 18680, to: 18689 } });
