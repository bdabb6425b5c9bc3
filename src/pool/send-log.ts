/**
 * The recent sends of one scope, each with two times: when it went out (what a 429's reset is
 * compared with to find out the quota's window) and from when the server had counted it at the
 * latest (its first response byte, else its send: what a learned window starts from). A ring of
 * the last `capacity` sends, so a pool of many keys holds a few kilobytes per scope; a quota
 * larger than the ring is estimated from its bucket's name or not at all. A send is found by its
 * send time, searching from the newest, where updates almost always land.
 */
export class SendLog {
  private readonly sent: number[] = [];
  private readonly counted: number[] = [];
  /** Whether the send was answered (its first byte came) and not refused. */
  private readonly answered: boolean[] = [];
  /** Where the next send goes once the ring is full: the oldest. */
  private next = 0;

  constructor(private readonly capacity: number) {}

  record(at: number): void {
    if (this.sent.length < this.capacity) {
      this.sent.push(at);
      this.counted.push(at);
      this.answered.push(false);
    } else {
      this.sent[this.next] = at;
      this.counted[this.next] = at;
      this.answered[this.next] = false;
      this.next = (this.next + 1) % this.capacity;
    }
  }

  /**
   * Takes in `other`'s sends (a key's, logged under the account it had before it joined this
   * one), in send order with what is known of each; the oldest go when the ring is full.
   */
  absorb(other: SendLog): void {
    const records = [...this.records(), ...other.records()]
      .filter((record) => !Number.isNaN(record.sent))
      .sort((a, b) => a.sent - b.sent)
      .slice(-this.capacity);
    this.sent.length = this.counted.length = this.answered.length = 0;
    this.next = 0;
    for (const record of records) {
      this.sent.push(record.sent);
      this.counted.push(record.counted);
      this.answered.push(record.answered);
    }
  }

  /** A send logged at admission (`from`) went out at `to` (the transport reported it). */
  moveSent(from: number, to: number): void {
    const index = this.newest(from, false);
    if (index < 0) return;
    this.sent[index] = to;
    this.counted[index] = to;
  }

  /** The send at `sentAt` was counted by `at` at the latest (its first response byte came then). */
  markCounted(sentAt: number, at: number): void {
    const index = this.newest(sentAt, false);
    if (index < 0) return;
    this.counted[index] = at;
    this.answered[index] = true;
  }

  /** The server did not count a send (it answered a platform 429): it leaves the log. */
  forget(sentAt: number): void {
    // A refusal was marked counted just before (its first byte came): that is the one to forget.
    const index = this.newest(sentAt, true);
    if (index < 0) return;
    this.sent[index] = NaN;
    this.counted[index] = NaN;
    this.answered[index] = false;
  }

  /**
   * How many sends went out after `from` and were answered, not refused: the server counted each
   * of them after `from`. By send time, not first byte: a send the server counted before `from`
   * can answer after it, and counting it would make a window look fuller than the server's.
   */
  answeredAfter(from: number): number {
    let count = 0;
    for (let index = 0; index < this.sent.length; index++) if (this.answered[index] === true && this.sent[index]! > from) count++;
    return count;
  }

  /**
   * Send times the server had surely counted when it refused the send of `at`: those up to `at`
   * (inclusive), and later ones already answered (they overtook it on the way), oldest first.
   */
  countedBefore(at: number): number[] {
    const sent = this.ordered(this.sent);
    const answered = this.ordered(this.answered);
    return sent.filter((time, index) => time <= at || (answered[index] === true && !Number.isNaN(time)));
  }

  /** Send times up to `at` (inclusive), oldest first. */
  sentThrough(at: number): number[] {
    return this.ordered(this.sent).filter((time) => time <= at);
  }

  /**
   * From when the server had surely counted each send, earliest first: an answered one from its
   * first byte; one still unanswered from its send plus `unansweredTripMs`, a bound on how long
   * after its send it may have arrived. Counted from the send alone, a window built from it would
   * free the room before the server's does (a request on a new connection arrives late) and let
   * the requests waiting for it draw a burst of 429s.
   */
  countedTimes(unansweredTripMs = 0): number[] {
    const counted = this.ordered(this.counted);
    const answered = this.ordered(this.answered);
    return counted
      .map((time, index) => (answered[index] === true ? time : time + unansweredTripMs))
      .filter((time) => !Number.isNaN(time))
      .sort((a, b) => a - b);
  }

  private ordered<T>(values: readonly T[]): T[] {
    return [...values.slice(this.next), ...values.slice(0, this.next)];
  }

  /** Every send with what is known of it, oldest first. */
  private records(): { sent: number; counted: number; answered: boolean }[] {
    const counted = this.ordered(this.counted);
    const answered = this.ordered(this.answered);
    return this.ordered(this.sent).map((sent, index) => ({ sent, counted: counted[index]!, answered: answered[index]! }));
  }

  /**
   * The index of the newest send that went out at `sentAt`, or -1. Sends of one millisecond are
   * told apart by whether they were answered: the newest with `answered` as given, else the newest.
   */
  private newest(sentAt: number, answered: boolean): number {
    const length = this.sent.length;
    let fallback = -1;
    for (let step = 1; step <= length; step++) {
      const index = (this.next - step + length) % length;
      if (this.sent[index] !== sentAt) continue;
      if (this.answered[index] === answered) return index;
      if (fallback < 0) fallback = index;
    }
    return fallback;
  }
}
