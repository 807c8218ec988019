export { Channel, Mode } from './channel';
export type { ChannelOptions, ChannelState, RequestOptions } from './channel';
export type { Data } from './data';
export { createError, isShmChannelError, ShmChannelError } from './errors';
export type { ErrorCode, ErrorDetails } from './errors';
export { IncomingRequest } from './incoming-request';
export { handleWith } from './operators/handle-with';
export { SharedMemory, validateName } from './shared-memory';
export type { SharedMemoryOptions } from './shared-memory';
