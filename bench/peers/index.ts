import { bareSdkPeer } from './bare-sdk.js';
import { cockatielPeer } from './cockatiel.js';
import { libraryPeer } from './library.js';
import { portkeyPeer } from './portkey.js';
import { recipePeer } from './recipe.js';
import type { Peer } from './types.js';

/** Every peer, the library first and the two baselines next. */
export const peers: readonly Peer[] = [libraryPeer, bareSdkPeer, recipePeer, cockatielPeer, portkeyPeer];

export { stopGateway } from './portkey.js';
export type { Peer, PeerId, PeerSession, PeerContext, PeerObservations, BenchKey, BenchRequest, Outcome } from './types.js';
