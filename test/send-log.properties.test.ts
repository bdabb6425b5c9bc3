/**
 * The send log against a model of what it promises: the last `capacity` sends, oldest first,
 * each found by its send time from the newest. Random capacities from 1 to 80 and up to 300
 * operations, so that logs still filling and logs whose ring has wrapped are both run, with every
 * operation in between.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SendLog } from '../src/pool/send-log.js';

interface ModelRecord {
  sent: number;
  counted: number;
  answered: boolean;
}

/** The log as a plain list, oldest first, trimmed to its capacity. */
class ModelLog {
  records: ModelRecord[] = [];

  constructor(private readonly capacity: number) {}

  record(at: number): void {
    this.records.push({ sent: at, counted: at, answered: false });
    if (this.records.length > this.capacity) this.records.shift();
  }

  private newest(sentAt: number, answered: boolean): ModelRecord | undefined {
    const matching = [...this.records].reverse().filter((record) => record.sent === sentAt);
    return matching.find((record) => record.answered === answered) ?? matching[0];
  }

  moveSent(from: number, to: number): void {
    const record = this.newest(from, false);
    if (record === undefined) return;
    record.sent = to;
    record.counted = to;
  }

  markCounted(sentAt: number, at: number): void {
    const record = this.newest(sentAt, false);
    if (record === undefined) return;
    record.counted = at;
    record.answered = true;
  }

  forget(sentAt: number): void {
    const record = this.newest(sentAt, true);
    if (record === undefined) return;
    Object.assign(record, { sent: NaN, counted: NaN, answered: false });
  }

  absorb(other: ModelLog): void {
    this.records = [...this.records, ...other.records]
      .filter((record) => !Number.isNaN(record.sent))
      .map((record) => ({ ...record }))
      .sort((a, b) => a.sent - b.sent)
      .slice(-this.capacity);
  }
}

type Operation =
  | { kind: 'record'; at: number }
  | { kind: 'moveSent'; from: number; to: number }
  | { kind: 'markCounted'; sentAt: number; at: number }
  | { kind: 'forget'; sentAt: number }
  | { kind: 'absorb'; sends: number[] };

// Few distinct times, so that lookups find sends of one millisecond, and miss some.
const time = fc.integer({ min: 0, max: 40 });
const operation: fc.Arbitrary<Operation> = fc.oneof(
  { weight: 6, arbitrary: time.map((at) => ({ kind: 'record' as const, at })) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('moveSent' as const), from: time, to: time }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('markCounted' as const), sentAt: time, at: time }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('forget' as const), sentAt: time }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('absorb' as const), sends: fc.array(time, { maxLength: 50, size: 'max' }) }) },
);

describe('the send log', () => {
  it('holds the last sends up to its capacity, as a list would, through its growth, its wrapping and every update', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 80 }), fc.array(operation, { maxLength: 300, size: 'max' }), (capacity, operations) => {
        const log = new SendLog(capacity);
        const model = new ModelLog(capacity);
        for (const op of operations) {
          if (op.kind === 'record') {
            log.record(op.at);
            model.record(op.at);
          } else if (op.kind === 'moveSent') {
            log.moveSent(op.from, op.to);
            model.moveSent(op.from, op.to);
          } else if (op.kind === 'markCounted') {
            log.markCounted(op.sentAt, op.at);
            model.markCounted(op.sentAt, op.at);
          } else if (op.kind === 'forget') {
            log.forget(op.sentAt);
            model.forget(op.sentAt);
          } else {
            const other = new SendLog(capacity);
            const otherModel = new ModelLog(capacity);
            for (const at of op.sends) {
              other.record(at);
              otherModel.record(at);
            }
            log.absorb(other);
            model.absorb(otherModel);
          }
          const live = model.records.filter((record) => !Number.isNaN(record.sent));
          expect(log.sentThrough(Infinity)).toEqual(model.records.map((record) => record.sent).filter((sent) => sent <= Infinity));
          expect(log.countedTimes(5)).toEqual(
            live.map((record) => (record.answered ? record.counted : record.counted + 5)).sort((a, b) => a - b),
          );
          expect(log.answeredAfter(20)).toBe(live.filter((record) => record.answered && record.sent > 20).length);
          expect(log.countedBefore(20)).toEqual(live.filter((record) => record.sent <= 20 || record.answered).map((record) => record.sent));
        }
      }),
      { numRuns: 150, seed: 20261207 },
    );
  });
});
