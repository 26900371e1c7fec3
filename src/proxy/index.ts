// Door of the data plane. The control plane uses only these: the messages it exchanges
// with workers and the shape of the route table it publishes.
export type { AccessLogSettings, LogCounts, FromWorker, SharedBuffers, ToWorker, WorkerInit } from './messages.js';
export type { AliasSnapshot, DeploymentSnapshot, KeySnapshot, ReplicaSnapshot, RouteTableSnapshot } from './route-table.js';
export type { TlsFiles } from './listener.js';
export { loadUws, type UwsBinding } from './uws.js';
