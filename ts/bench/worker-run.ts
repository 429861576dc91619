/**
 * What the benchmark's worker-thread variants share (`js-sync` of `bench --guest`, `js` of
 * `bench --virtio`): the worker's messages in order, a deadline, and the device model's way of
 * ending a VM that may already be gone.
 */
import type { Worker } from 'node:worker_threads';
import type { Vm } from '../hsm.js';

/** `GUEST_FLAG_IO_COMPLETION_POLLING`. */
export const VM_FLAG_POLLING = 1n << 2n;

/**
 * The worker's messages, one per call, in order: `next(what)` resolves with the next message,
 * rejects with the worker's error, or when it exits before posting one (`what` names the message
 * awaited, for the error).
 */
export function workerInbox(worker: Worker, name: string): (what: string) => Promise<Record<string, unknown>> {
  const messages: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  let failure: unknown;
  let exited = false;
  worker.on('message', (m: Record<string, unknown>) => (messages.push(m), wake?.()));
  worker.on('error', (e) => ((failure = e), wake?.()));
  worker.on('exit', () => ((exited = true), wake?.()));
  return async (what) => {
    while (messages.length === 0) {
      if (failure) throw failure;
      // Also when it exited before this call: nothing would wake the wait.
      if (exited) throw new Error(`${name}: the worker ended before ${what}`);
      await new Promise<void>((resolve) => (wake = resolve));
    }
    return messages.shift() as Record<string, unknown>;
  };
}

/** A promise that rejects after `ms` (the guest did not finish), and its `clear`. */
export function deadline(what: string, ms: number): { promise: Promise<never>; clear: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: the guest did not finish in ${ms} ms`)), ms)));
  return { promise, clear: () => clearTimeout(timer) };
}

/** PAUSE and CLEAR_VM_IOREQ, the device model's order before a destroy; the VM may be gone. */
export function quiesce(vm: Vm): void {
  try {
    vm.pause();
    vm.clearVmIoreq();
  } catch {
    // The VM may already be gone (powered off, destroyed).
  }
}

/** DESTROY_VM, if not destroyed already. */
export function destroy(vm: Vm): void {
  try {
    vm.destroy();
  } catch {
    // Already destroyed.
  }
}
