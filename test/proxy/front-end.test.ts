// The node front end (listen.front_end: node) over plain HTTP: test/helpers/front-end-suite.ts.
// The rest of the suite runs through the default front end.

import { frontEndSuite } from '../helpers/front-end-suite.js';

// Replica ports 18990-18999 belong to this file.
frontEndSuite({ tls: null, ports: { from: 18990, to: 18999 } });
