/**
 * `SendMargin`: how long after its send the pool assumes the server counted a request. It starts
 * wide, narrows by 1 % per success toward the floor, widens to twice the trip a surprise refusal
 * proved, and does not narrow below that proven trip again until it has faded.
 */
import { describe, expect, it } from 'vitest';
import { SendMargin } from '../src/pool/send-margin.js';

function narrowed(margin: SendMargin, successes: number): number {
  for (let index = 0; index < successes; index++) margin.narrow();
  return margin.currentMs;
}

describe('SendMargin', () => {
  it('starts at the start value, inside [floor, ceiling]', () => {
    expect(new SendMargin(50, 250, 1_000).currentMs).toBe(250);
    expect(new SendMargin(400, 250, 1_000).currentMs).toBe(400);
    expect(new SendMargin(0, 5_000, 1_000).currentMs).toBe(1_000);
  });

  it('narrows by 1 % per success and stops at the floor', () => {
    const margin = new SendMargin(50, 250, 1_000);
    expect(narrowed(margin, 1)).toBeCloseTo(247.5, 6);
    // 250 × 0.99^160 ≈ 50: about 160 successes from the start to the floor, then it stays.
    expect(narrowed(margin, 100)).toBeGreaterThan(50);
    expect(narrowed(margin, 100)).toBe(50);
    expect(narrowed(margin, 1_000)).toBe(50);
  });

  it('a surprise refusal widens it to twice the trip that refusal took, never past the ceiling', () => {
    const margin = new SendMargin(10, 10, 1_000);
    margin.widen(40);
    expect(margin.currentMs).toBe(80);
    margin.widen(700);
    expect(margin.currentMs).toBe(1_000);
  });

  it('after a refusal it narrows back only to the proven trip, which fades slowly', () => {
    const margin = new SendMargin(10, 10, 1_000);
    margin.widen(40);
    // 80 × 0.99^200 ≈ 11 would pass the proven 40 ms; the proven trip holds it.
    const afterTwoHundred = narrowed(margin, 200);
    expect(afterTwoHundred).toBeLessThan(40);
    expect(afterTwoHundred).toBeGreaterThan(39);
    // The proven trip fades by 0.01 % per success: after 20,000 quiet successes it is ~5 ms, under the floor.
    expect(narrowed(margin, 20_000)).toBe(10);
  });

  it("an answered request's slack is 10 ms, or twice the trip a surprise refusal proved, never past the ceiling", () => {
    const margin = new SendMargin(1_000, 250, 1_000);
    expect(margin.answeredSlackMs).toBe(10);
    margin.widen(30);
    expect(margin.answeredSlackMs).toBe(60);
    margin.widen(900);
    expect(margin.answeredSlackMs).toBe(1_000);
  });
});
