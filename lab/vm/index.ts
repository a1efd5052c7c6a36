// The test/demo VM launcher: one import for tests and the demo.
export * from './accel.js';
export * from './args.js';
export * from './errors.js';
export * from './images.js';
export * from './proc.js';
export * from './qmp.js';
export * from './serial.js';
export * from './vm.js';
export * from './vub-lines.js';
