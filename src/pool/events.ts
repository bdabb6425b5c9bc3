import type { ErrorKind, ErrorScope } from '../core/errors.js';
import type { KeyState, OpenReason } from '../health/records.js';

/**
 * What the pool and its operators report on `pool.events$`, for logs and metrics. A union on
 * `type`; every event carries the scheduler time `at`. Labels only, never key text.
 */
export type PoolEvent =
  | {
      type: 'attempt';
      requestId: string;
      attempt: number;
      keyLabel: string;
      model: string;
      at: number;
    }
  | {
      type: 'retry';
      requestId: string;
      /** The attempt that failed. */
      attempt: number;
      reason: ErrorKind;
      message: string;
      status?: number;
      keyLabel?: string;
      model?: string;
      /** How long the retry waits before its next attempt (0: at once, on another key). */
      delayMs: number;
      at: number;
    }
  | {
      type: 'cooldown';
      scope: Exclude<ErrorScope, 'request' | 'transport'>;
      /** A key label, an account id or a model id. */
      target: string;
      reason: OpenReason | 'exhausted' | 'disabled';
      until: number;
      errorKind?: ErrorKind;
      at: number;
    }
  | {
      type: 'state-change';
      scope: 'key' | 'model';
      target: string;
      from: KeyState;
      to: KeyState;
      at: number;
    }
  | {
      type: 'fallback';
      requestId: string;
      from: string;
      to: string;
      reason: ErrorKind;
      at: number;
    }
  | {
      type: 'restart';
      requestId: string;
      attempt: number;
      reason: ErrorKind;
      at: number;
    }
  | {
      /** The state store changed mode: `local` when it failed and each pool limits alone. */
      type: 'store';
      mode: 'shared' | 'local';
      reason?: string;
      at: number;
    }
  | {
      type: 'queued';
      requestId: string;
      /** Requests waiting, this one included. */
      queued: number;
      at: number;
    };

export type PoolEventType = PoolEvent['type'];
