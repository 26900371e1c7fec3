// One clock read per event on the hot path. A request reads the time at several points
// (arrival, rate limit, breaker and retry budget, response head, end), and each read costs
// 50-90 ns in a VM: six of them were a visible share of a small proxied request. The two
// events that carry the hot path (a client request arriving, an upstream read) read the
// clock once with holdClock() and release it when they return; what they run meanwhile
// shares that reading. Anywhere else (timers, Redis replies, client uploads) nothing is
// held and every call reads the clock itself, so a held value is never older than the
// event being handled.

import { performance } from 'node:perf_hooks';

/** performance.now() of the event being handled; -1 outside one. */
let held = -1;
/** Wall time minus monotonic time; resynced every sweep so that wall-clock steps and drift show within 100 ms. */
let wallOffset = Date.now() - performance.now();

/** Milliseconds on the monotonic clock (performance.now()): durations. */
export function monoNow(): number {
  return held >= 0 ? held : performance.now();
}

/** Milliseconds since the epoch, fractional (Date.now()'s clock): for state shared with other threads. */
export function wallNow(): number {
  return held >= 0 ? held + wallOffset : Date.now();
}

/** Starts an event: the clock is read once, here. */
export function holdClock(): void {
  held = performance.now();
}

/** Ends the event begun by holdClock (call it from a finally: a held reading must not outlive its event). */
export function releaseClock(): void {
  held = -1;
}

export function resyncWallClock(): void {
  wallOffset = Date.now() - performance.now();
}
