// The request filters: the policies a request passes between routing and the balancer
// (Envoy's HTTP filter chain, fastify's per-route hooks). Each hook is optional; a route's
// chain is compiled once per route table into one array per hook, or null, so a route
// without policies runs no filter code at all.
//
// A request runs every filter's onHead, synchronously in the uWS handler (the client's
// head is readable only there), then every onRequest in order. A filter that returns
// Pause resumes the request later with ex.resume() (Envoy's continueDecoding) or answers
// it (ex.reject); one that answers returns Answered. onDone runs once when the exchange
// ends, however it ended, and never throws.

import type { ClientHead } from '../headers.js';

export const enum FilterStatus {
  Continue = 0,
  /** The filter holds the request: it resumes or answers it later. */
  Pause = 1,
  /** The filter has answered (or handed the request to someone who will). */
  Answered = 2,
}

// Generic over the request (the Exchange): the route table holds compiled chains, and this
// module imports nothing of the request's, so that no import cycle runs through the table.
export interface RequestFilter<X> {
  /** Reads what it needs of the client's head, valid during this call only; Continue or Answered. */
  onHead?(ex: X, head: ClientHead): FilterStatus;
  onRequest?(ex: X): FilterStatus;
  onDone?(ex: X): void;
}

type Hooked<X, K extends keyof RequestFilter<X>> = RequestFilter<X> & Required<Pick<RequestFilter<X>, K>>;

/** One route's filters, by hook, in chain order. */
export class FilterChain<X = unknown> {
  readonly head: readonly Hooked<X, 'onHead'>[] | null;
  readonly request: readonly Hooked<X, 'onRequest'>[] | null;
  readonly done: readonly Hooked<X, 'onDone'>[] | null;

  private constructor(filters: readonly RequestFilter<X>[]) {
    this.head = only(filters.filter((f): f is Hooked<X, 'onHead'> => f.onHead !== undefined));
    this.request = only(filters.filter((f): f is Hooked<X, 'onRequest'> => f.onRequest !== undefined));
    this.done = only(filters.filter((f): f is Hooked<X, 'onDone'> => f.onDone !== undefined));
    Object.freeze(this);
  }

  /** null when there is no filter: the route takes the direct path. */
  static of<X>(filters: readonly RequestFilter<X>[]): FilterChain<X> | null {
    return filters.length === 0 ? null : new FilterChain(filters);
  }
}

function only<T>(list: T[]): readonly T[] | null {
  return list.length === 0 ? null : Object.freeze(list);
}
