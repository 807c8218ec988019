// Every scenario, in the order they run within their stage (see Stage in ./scenario). A new
// scenario is a file here, one line below, and its rows in ../metrics.ts.
import { idle } from './idle';
import { notify4k, notify64, notify64Batch, notify64BatchBound, notify64Bound } from './notify';
import { handOff16m } from './handoff';
import {
  payload16m,
  payload16mBound,
  payload16mCopy,
  payload1m,
  payload1mBound,
  payload1mCopy,
  payload1mCopyBound,
} from './payload';
import { clientsResources, idleManyClients, roundTripsManyClients } from './many-clients';
import { roundTrip, roundTripOneCore } from './round-trip';
import { runtimes } from './runtimes';
import type { Scenario } from './scenario';

export type { Bench, Scenario, Stage } from './scenario';

export const SCENARIOS: Scenario[] = [
  idle,
  idleManyClients,
  roundTrip,
  notify64,
  notify64Batch,
  notify4k,
  payload1m,
  payload1mCopy,
  payload16m,
  payload16mCopy,
  handOff16m,
  roundTripOneCore,
  runtimes,
  roundTripsManyClients,
  clientsResources,
  notify64Bound,
  notify64BatchBound,
  payload1mCopyBound,
  payload1mBound,
  payload16mBound,
];
