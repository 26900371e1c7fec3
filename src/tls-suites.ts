// TLS 1.2 suites for every port that serves TLS, both front ends of the gateway port and the
// admin port (a cipher list applies to TLS 1.2 only; TLS 1.3 suites are the library's):
// ECDHE with AES-GCM or ChaCha20, as Mozilla's "intermediate" profile. BoringSSL's default,
// and Node's (whose HIGH takes in AES-CBC with a static RSA key exchange: no forward
// secrecy for the admin token), would also offer CBC and static-RSA suites.
export const TLS12_SUITES = 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305';
