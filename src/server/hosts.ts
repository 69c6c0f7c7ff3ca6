/** Which host names the server answers to; no fastify here, so the CLI checks options before loading it. */

/** The loopback names, as a Host header's host name reads them (IPv6 in brackets). */
export const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

/** Whether `host` (as given to --host) is a loopback address, where no token is needed. */
export function isLoopback(host: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/i.test(host.trim());
}
