import type { StateChange } from '../store/state-store.js';
import type { RedisClientLike, RedisSubscriberLike } from './client.js';
import { globLiteral, stateChangeOf } from './options.js';

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
  // Subscribed on every connection, not once: ioredis subscribes again after a reconnect only to
  // channels whose subscription succeeded, and one sent while the connection was not up fails (a
  // client without an offline queue) or is dropped (Redis down longer than the client's retries),
  // which would leave the store deaf to the fleet for good. Subscribing again is a no-op.
  subscriber.on('ready', () => {
    subscriber.subscribe(channel).catch(() => undefined);
    onConnected();
  });
  subscriber.subscribe(channel).catch(() => undefined);
  return subscriber;
}

/**
 * Replays the states the fleet stored under `prefix` (what is left of them) into `changes`, each
 * with its remaining time and marked `replayed`. A key not ours to read (another type, written by
 * someone else) is skipped, not the rest of the replay; Redis down (at start) ends it quietly: the
 * store runs degraded until Redis answers, and replays again then.
 */
export async function replayStoredStates(
  client: RedisClientLike,
  prefix: string,
  changes: { next(change: StateChange): void },
  stopped: () => boolean,
): Promise<void> {
  // A Cluster is listed node by node: its SCAN goes to a node picked at random, with a cursor of
  // another's. It knows its nodes once connected (a command connects a lazy one).
  let listers: Pick<RedisClientLike, 'scan'>[] = [client];
  if (typeof client.nodes === 'function') {
    try {
      if (client.nodes('master').length === 0) await client.ping();
    } catch {
      return;
    }
    const masters = client.nodes('master');
    if (masters.length > 0) listers = masters;
  }
  for (const lister of listers) {
    if (stopped()) return;
    await replayListedBy(lister, client, prefix, changes, stopped);
  }
}

async function replayListedBy(
  lister: Pick<RedisClientLike, 'scan'>,
  client: RedisClientLike,
  prefix: string,
  changes: { next(change: StateChange): void },
  stopped: () => boolean,
): Promise<void> {
  try {
    let cursor = '0';
    do {
      const [next, keys] = await lister.scan(cursor, 'MATCH', `${globLiteral(prefix)}:state:*`, 'COUNT', 200);
      cursor = next;
      for (const key of keys) {
        let value: string | null;
        let ttl: number;
        try {
          [value, ttl] = await Promise.all([client.get(key), client.pttl(key)]);
        } catch {
          continue;
        }
        const change = value === null || stopped() ? undefined : stateChangeOf(value);
        if (change !== undefined)
          changes.next(Object.assign(change, { remainingMs: ttl > 0 ? ttl : Infinity, origin: `redis:${change.origin}`, replayed: true }));
      }
    } while (cursor !== '0' && !stopped());
  } catch {
    // Redis down: nothing to replay now.
  }
}
