// A call to a dependency that was made and failed (no connection, no answer in time): the
// admin API answers 503 with Retry-After, naming the dependency, as for an open breaker
// (CircuitOpenError), whose calls are not made at all.

import { SluiceError } from '../errors/index.js';

export class DependencyUnavailableError extends SluiceError {
  /** Why, without the dependency's name: what a caller that words its own message quotes. */
  readonly reason: string;
  /** Sent with the admin API's answer: the next breaker probe, or a reconnect, is about a second away. */
  readonly headers: Readonly<Record<string, string>> = { 'retry-after': '1' };

  constructor(dependency: string, use: string, reason: string) {
    super('SLUICE_ERR_DEPENDENCY_UNAVAILABLE', `${dependency} (${use}) is unavailable: ${reason}`, { dependency, use });
    this.name = 'DependencyUnavailableError';
    this.reason = reason;
  }
}
