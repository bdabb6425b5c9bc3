import type { Subscription } from 'rxjs';

/**
 * A subscription just made, kept unless its holder was torn down while making it (`ended`, read
 * after `subscribe` returned): then it is ended at once and nothing is kept. A synchronous
 * emission inside `subscribe` can end the holder before the subscription exists to be stored.
 *
 *   this.work = keptUnless(source.subscribe(this), this.stopped);
 */
export function keptUnless(subscription: Subscription, ended: boolean): Subscription | undefined {
  if (!ended) return subscription;
  subscription.unsubscribe();
  return undefined;
}
