export { Channel, Mode } from './channel';
export type { ChannelOptions, ChannelState, RequestOptions } from './channel';
export type { Data } from './data';
export { createError, isShmChannelError, ShmChannelError } from './errors';
export type { ErrorCode, ErrorDetails } from './errors';
export { IncomingRequest } from './incoming-request';
export { handleWith } from './operators/handle-with';
export { inspectSegment, SharedMemory, validateName } from './shared-memory';
export type { SegmentInfo, SharedMemoryOptions } from './shared-memory';
