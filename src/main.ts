#!/usr/bin/env node
// vhost-user-balloon: the daemon's command line.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { Daemon } from './daemon.js';
import { BalloonError } from './errors.js';
import { createLogger, LOG_LEVELS, LogLevel } from './log.js';
import { DEFAULT_MESSAGE_VQ_BIT, MESSAGE_VQ_BIT_MAX, MESSAGE_VQ_BIT_MIN } from './virtio/constants.js';
import { validMessageVqBit } from './virtio/features.js';

const capabilities = {
  type: 'balloon',
  features: ['stats-vq', 'deflate-on-oom', 'page-reporting', 'message-vq'],
};

async function main(argv: string[]): Promise<number> {
  const args = await yargs(argv)
    .scriptName('vhost-user-balloon')
    .usage('$0 --socket-path PATH [options]\n\n'
      + 'A virtio-balloon device for QEMU, as a vhost-user backend. QEMU connects with:\n'
      + '  -object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem\n'
      + '  -chardev socket,id=vb,path=PATH,reconnect=1 -device vhost-user-balloon,chardev=vb')
    .option('socket-path', { type: 'string', describe: 'Listen on this unix socket for QEMU (a stale socket file is replaced)' })
    .option('fd', { type: 'number', describe: 'Serve this already-connected vhost-user socket fd instead (exits when it closes)' })
    .option('print-capabilities', { type: 'boolean', describe: 'Print the backend capabilities as JSON and exit' })
    .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'Log verbosity (JSON lines on stderr)' })
    .option('stats-interval', { type: 'number', default: 5, describe: 'Seconds between guest memory-statistics requests (0 = never)' })
    .option('message-vq-bit', {
      type: 'string', default: String(DEFAULT_MESSAGE_VQ_BIT),
      describe: `Feature bit of the message virtqueue (${MESSAGE_VQ_BIT_MIN}-${MESSAGE_VQ_BIT_MAX}), or "off". Must match the guest driver and QEMU's message-vq-bit`,
    })
    .option('stats-vq', { type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_STATS_VQ (--no-stats-vq to withhold)' })
    .option('deflate-on-oom', { type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM' })
    .option('page-reporting', { type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_PAGE_REPORTING (free page reporting)' })
    .conflicts('socket-path', 'fd')
    .check((a) => {
      if (a['print-capabilities']) return true;
      if (a['socket-path'] === undefined && a.fd === undefined) throw new Error('give --socket-path PATH (or --fd N for a connected socket)');
      if (a.fd !== undefined && (!Number.isInteger(a.fd) || a.fd < 0)) throw new Error(`--fd ${a.fd}: expected a non-negative integer`);
      if (!(a['stats-interval'] >= 0)) throw new Error(`--stats-interval ${a['stats-interval']}: expected seconds >= 0`);
      const bit = a['message-vq-bit'];
      if (bit !== 'off' && !validMessageVqBit(Number(bit))) {
        throw new Error(`--message-vq-bit ${bit}: expected ${MESSAGE_VQ_BIT_MIN}-${MESSAGE_VQ_BIT_MAX} or "off" (bits 0-5 belong to upstream features)`);
      }
      return true;
    })
    .example('$0 --socket-path /run/vhost-user-balloon/vm1.sock', 'serve one VM')
    .example('$0 --print-capabilities', 'what QEMU/libvirt probe')
    .strict()
    .showHelpOnFail(false, 'Run vhost-user-balloon --help for the options.')
    .wrap(Math.min(100, process.stdout.columns || 100))
    .help()
    .version(false)
    .parse();

  if (args['print-capabilities']) {
    process.stdout.write(`${JSON.stringify(capabilities, null, 2)}\n`);
    return 0;
  }
  const log = createLogger(args['log-level']);
  const bit = args['message-vq-bit'];
  const daemon = new Daemon({
    socketPath: args['socket-path'],
    fd: args.fd,
    device: {
      statsIntervalMs: Math.round(args['stats-interval'] * 1000),
      features: {
        messageVqBit: bit === 'off' ? null : Number(bit),
        stats: args['stats-vq'],
        deflateOnOom: args['deflate-on-oom'],
        pageReporting: args['page-reporting'],
      },
    },
    log,
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      log.info({ signal: sig }, 'shutting down');
      daemon.stop(0);
    });
  }
  try {
    daemon.start();
  } catch (err) {
    if (err instanceof BalloonError) {
      process.stderr.write(`vhost-user-balloon: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  return daemon.done;
}

main(hideBin(process.argv)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`vhost-user-balloon: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
