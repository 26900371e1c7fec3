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

import type { Exchange } from '../exchange.js';
import type { ClientHead } from '../headers.js';

export const enum FilterStatus {
  Continue = 0,
  /** The filter holds the request: it resumes or answers it later. */
  Pause = 1,
  /** The filter has answered (or handed the request to someone who will). */
  Answered = 2,
}

export interface RequestFilter {
  /** Reads what it needs of the client's head, valid during this call only; Continue or Answered. */
  onHead?(ex: Exchange, head: ClientHead): FilterStatus;
  onRequest?(ex: Exchange): FilterStatus;
  onDone?(ex: Exchange): void;
}

type Hooked<K extends keyof RequestFilter> = RequestFilter & Required<Pick<RequestFilter, K>>;

/** One route's filters, by hook, in chain order. */
export class FilterChain {
  readonly head: readonly Hooked<'onHead'>[] | null;
  readonly request: readonly Hooked<'onRequest'>[] | null;
  readonly done: readonly Hooked<'onDone'>[] | null;

  private constructor(filters: readonly RequestFilter[]) {
    this.head = only(filters.filter((f): f is Hooked<'onHead'> => f.onHead !== undefined));
    this.request = only(filters.filter((f): f is Hooked<'onRequest'> => f.onRequest !== undefined));
    this.done = only(filters.filter((f): f is Hooked<'onDone'> => f.onDone !== undefined));
    Object.freeze(this);
  }

  /** null when there is no filter: the route takes the direct path. */
  static of(filters: readonly RequestFilter[]): FilterChain | null {
    return filters.length === 0 ? null : new FilterChain(filters);
  }
}

function only<T>(list: T[]): readonly T[] | null {
  return list.length === 0 ? null : Object.freeze(list);
}
