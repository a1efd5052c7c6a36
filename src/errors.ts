// Stable error codes: operators and scripts match on `code`, not on text.
export type BalloonErrorCode =
  | 'EBALLOON_CONFIG'        // invalid option or config file value
  | 'EBALLOON_NATIVE'        // native library missing or failed to load
  | 'EBALLOON_SOCKET'        // cannot listen on / use the vhost-user socket
  | 'EBALLOON_PRESSURE'      // host pressure source cannot be set up
  | 'EBALLOON_NOT_CONNECTED' // no frontend (QEMU) connected
  | 'EBALLOON_RANGE'         // a value outside what the device can do
  | 'EBALLOON_PERMISSION'    // caller may not use the control socket
  | 'EBALLOON_STATE'         // the state directory cannot be read or written
  | 'EBALLOON_UNKNOWN_VM'    // no such VM in this daemon
  | 'EBALLOON_EXISTS'        // the VM (or its socket) is already served
  | 'EBALLOON_BUSY'          // a frontend is attached; --force to go ahead
  | 'EBALLOON_INTERNAL';     // a bug: report it

export class BalloonError extends Error {
  constructor(readonly code: BalloonErrorCode, message: string, readonly hint?: string) {
    super(hint ? `${message}\n  hint: ${hint}` : message);
    this.name = 'BalloonError';
  }
}
