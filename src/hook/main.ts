#!/usr/bin/env node
// libvirt hook: `/etc/libvirt/hooks/qemu.d/vhost-user-balloon <domain> <op> <sub-op> <extra>`
// with the domain XML on stdin. For domains that opt in through
// <metadata><vub:balloon xmlns:vub="urn:vhost-user-balloon:1" .../></metadata>,
// `prepare` adds the VM to the host daemon and `release` removes it
// (operations.ts). Other domains and other operations: nothing, exit 0. A
// failure at `prepare` exits 1 with a message on stderr, which libvirt shows
// when it refuses to start the domain.
import { OPERATIONS, stdinXml } from './operations.js';

async function main(argv: string[]): Promise<number> {
  const [domainArg, op, subOp = '-', extra = '-'] = argv;
  if (!domainArg || !op) {
    process.stderr.write('usage: vhost-user-balloon-hook <domain> <operation> [sub-op] [extra] < domain.xml\n'
      + '(libvirt runs this as /etc/libvirt/hooks/qemu.d/vhost-user-balloon; see examples/libvirt/)\n');
    return 2;
  }
  const run = Object.hasOwn(OPERATIONS, op) ? OPERATIONS[op] : undefined;
  if (!run) return 0;
  return run({
    domainArg, op, subOp, extra: extra === '-' ? '' : extra, readXml: stdinXml(),
    log: (line) => process.stderr.write(`vhost-user-balloon: ${line}\n`),
  });
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`vhost-user-balloon: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
