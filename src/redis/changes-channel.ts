import type { StateChange } from '../store/state-store.js';
import type { RedisClientLike, RedisSubscriberLike } from './client.js';
import { stateChangeOf } from './options.js';

/**
 * Opens the store's pub/sub connection on `client`'s `duplicate()`: `changes` hears each state
 * change published on `channel` (anything not one is ignored rather than crash a subscriber), and
 * `onConnected` each time the connection is up, the first time included: changes published while
 * it was not (before it first connected, or during a drop) were missed, and the stored states
 * tell them.
 */
export function subscribeToChanges(
  client: RedisClientLike,
  channel: string,
  changes: { next(change: StateChange): void },
  onConnected: () => void,
): RedisSubscriberLike {
  const subscriber = client.duplicate();
  subscriber.on('error', () => undefined);
  subscriber.on('message', (_channel: string, message: string) => {
    const change = stateChangeOf(message);
    if (change !== undefined) changes.next(change);
  });
  subscriber.on('ready', onConnected);
  void subscriber.subscribe(channel).catch(() => undefined);
  return subscriber;
}
