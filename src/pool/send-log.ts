/**
 * The recent sends of one scope, each with two times: when it went out (what a 429's reset is
 * compared with to find out the quota's window) and from when the server had counted it at the
 * latest (its first response byte, else its send: what a learned window starts from). A ring of
 * the last `capacity` sends, so a pool of many keys holds a few kilobytes per scope; a quota
 * larger than the ring is estimated from its bucket's name or not at all. A send is found by its
 * send time, searching from the newest, where updates almost always land.
 */
/** A send's three numbers, side by side in the log's one array: when it went out, from when it was counted, whether it was answered. */
const SENT = 0;
const COUNTED = 1;
const ANSWERED = 2;
const FIELDS = 3;

interface SendRecord {
  sent: number;
  counted: number;
  answered: boolean;
}

export class SendLog {
  /**
   * Every send's numbers in one array of doubles (`answered` as 1 or 0), not an array per field:
   * every admission records a send, at 1,000 keys in a log that has gone cold, and one array is
   * one line of memory to bring in where three arrays were six.
   */
  private readonly records: number[] = [];
  /** Where the next send goes once the ring is full: the oldest. */
  private next = 0;

  constructor(private readonly capacity: number) {}

  private get size(): number {
    return this.records.length / FIELDS;
  }

  record(at: number): void {
    const records = this.records;
    if (records.length < this.capacity * FIELDS) {
      records.push(at, at, 0);
      return;
    }
    const offset = this.next * FIELDS;
    records[offset + SENT] = at;
    records[offset + COUNTED] = at;
    records[offset + ANSWERED] = 0;
    this.next = (this.next + 1) % this.capacity;
  }

  /**
   * Takes in `other`'s sends (a key's, logged under the account it had before it joined this
   * one), in send order with what is known of each; the oldest go when the ring is full.
   */
  absorb(other: SendLog): void {
    const records = [...this.inOrder(), ...other.inOrder()]
      .filter((record) => !Number.isNaN(record.sent))
      .sort((a, b) => a.sent - b.sent)
      .slice(-this.capacity);
    this.records.length = 0;
    this.next = 0;
    for (const record of records) this.records.push(record.sent, record.counted, record.answered ? 1 : 0);
  }

  /** A send logged at admission (`from`) went out at `to` (the transport reported it). */
  moveSent(from: number, to: number): void {
    const offset = this.newest(from, false);
    if (offset < 0) return;
    this.records[offset + SENT] = to;
    this.records[offset + COUNTED] = to;
  }

  /** The send at `sentAt` was counted by `at` at the latest (its first response byte came then). */
  markCounted(sentAt: number, at: number): void {
    const offset = this.newest(sentAt, false);
    if (offset < 0) return;
    this.records[offset + COUNTED] = at;
    this.records[offset + ANSWERED] = 1;
  }

  /** The server did not count a send (it answered a platform 429): it leaves the log. */
  forget(sentAt: number): void {
    // A refusal was marked counted just before (its first byte came): that is the one to forget.
    const offset = this.newest(sentAt, true);
    if (offset < 0) return;
    this.records[offset + SENT] = NaN;
    this.records[offset + COUNTED] = NaN;
    this.records[offset + ANSWERED] = 0;
  }

  /**
   * How many sends went out after `from` and were answered, not refused: the server counted each
   * of them after `from`. By send time, not first byte: a send the server counted before `from`
   * can answer after it, and counting it would make a window look fuller than the server's.
   */
  answeredAfter(from: number): number {
    const records = this.records;
    let count = 0;
    for (let offset = 0; offset < records.length; offset += FIELDS) {
      if (records[offset + ANSWERED] === 1 && records[offset + SENT]! > from) count++;
    }
    return count;
  }

  /**
   * Send times the server had surely counted when it refused the send of `at`: those up to `at`
   * (inclusive), and later ones already answered (they overtook it on the way), oldest first.
   */
  countedBefore(at: number): number[] {
    return this.inOrder()
      .filter((record) => record.sent <= at || (record.answered && !Number.isNaN(record.sent)))
      .map((record) => record.sent);
  }

  /** Send times up to `at` (inclusive), oldest first. */
  sentThrough(at: number): number[] {
    return this.inOrder()
      .map((record) => record.sent)
      .filter((time) => time <= at);
  }

  /**
   * From when the server had surely counted each send, earliest first: an answered one from its
   * first byte; one still unanswered from its send plus `unansweredTripMs`, a bound on how long
   * after its send it may have arrived. Counted from the send alone, a window built from it would
   * free the room before the server's does (a request on a new connection arrives late) and let
   * the requests waiting for it draw a burst of 429s.
   */
  countedTimes(unansweredTripMs = 0): number[] {
    return this.inOrder()
      .map((record) => (record.answered ? record.counted : record.counted + unansweredTripMs))
      .filter((time) => !Number.isNaN(time))
      .sort((a, b) => a - b);
  }

  /** Every send with what is known of it, oldest first. */
  private inOrder(): SendRecord[] {
    const records = this.records;
    const size = this.size;
    const ordered: SendRecord[] = [];
    for (let step = 0; step < size; step++) {
      const offset = ((this.next + step) % size) * FIELDS;
      ordered.push({ sent: records[offset + SENT]!, counted: records[offset + COUNTED]!, answered: records[offset + ANSWERED] === 1 });
    }
    return ordered;
  }

  /**
   * Where the newest send that went out at `sentAt` starts in `records`, or -1. Sends of one
   * millisecond are told apart by whether they were answered: the newest with `answered` as
   * given, else the newest.
   */
  private newest(sentAt: number, answered: boolean): number {
    const records = this.records;
    const size = this.size;
    const flag = answered ? 1 : 0;
    let fallback = -1;
    for (let step = 1; step <= size; step++) {
      const offset = ((this.next - step + size) % size) * FIELDS;
      if (records[offset + SENT] !== sentAt) continue;
      if (records[offset + ANSWERED] === flag) return offset;
      if (fallback < 0) fallback = offset;
    }
    return fallback;
  }
}
