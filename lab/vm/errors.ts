// Stable codes for the VM launcher, in the project's EBALLOON_ family.
export type VmErrorCode =
  | 'EBALLOON_VM_BUILD'   // qemu/build.sh or qemu/guest/build.sh failed
  | 'EBALLOON_VM_START'   // QEMU did not start (bad arguments, backend absent, ...)
  | 'EBALLOON_VM_EXITED'  // QEMU exited while something was waiting on it
  | 'EBALLOON_VM_TIMEOUT' // the guest or QEMU did not answer in time
  | 'EBALLOON_VM_GUEST'   // the guest's init reported a failed command
  | 'EBALLOON_VM_QMP';    // QMP error reply or broken QMP connection

export class VmError extends Error {
  constructor(readonly code: VmErrorCode, message: string, readonly detail?: string) {
    super(detail ? `${message}\n${detail}` : message);
    this.name = 'VmError';
  }
}
