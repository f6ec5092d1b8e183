// A throwaway TLS certificate for servers the tests run on 127.0.0.1.
import { execFileSync } from 'node:child_process';

/** Writes a self-signed P-256 certificate for 127.0.0.1 to `cert` and its key to `key` (openssl). */
export function writeLoopbackCert(cert: string, key: string): void {
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
      ...['-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'],
      ...['-addext', 'subjectAltName=IP:127.0.0.1'],
    ],
    { stdio: 'ignore' },
  );
}
