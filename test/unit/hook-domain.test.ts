import { describe, expect, it } from 'vitest';
import { findBalloonDevice, parseDomain, parseQemuOpts, QEMU_XML_NS, VUB_XML_NS } from '../../src/hook/domain.js';
import { qemuConfIdentity, resolveId } from '../../src/hook/qemu-user.js';

const dom = (inner: string) => `<domain type='qemu'><name>vm1</name>${inner}<devices/></domain>`;

describe('parseDomain', () => {
  it.each([
    ['no metadata', dom(''), null],
    ['other metadata only', dom(`<metadata><app:x xmlns:app='urn:other'/></metadata>`), null],
    ['our element in another namespace', dom(`<metadata><v:balloon xmlns:v='urn:other'/></metadata>`), null],
    ['opted in, defaults', dom(`<metadata><vub:balloon xmlns:vub='${VUB_XML_NS}'/></metadata>`), {}],
    ['opted in under another prefix', dom(`<metadata><b:balloon xmlns:b='${VUB_XML_NS}' socket='/run/x.sock'/></metadata>`), { socketPath: '/run/x.sock' }],
    ['opted in with a config', dom(`<metadata><vub:balloon xmlns:vub='${VUB_XML_NS}' config='/etc/vub/vm1.json'/></metadata>`), { config: '/etc/vub/vm1.json' }],
    ['default namespace', dom(`<metadata><balloon xmlns='${VUB_XML_NS}' socket='/s'/></metadata>`), { socketPath: '/s' }],
  ])('%s', (_name, xml, optIn) => {
    const d = parseDomain(xml);
    expect(d.name).toBe('vm1');
    expect(d.optIn).toEqual(optIn);
  });

  it.each([
    [`<seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+107</label></seclabel>`, { uid: 64055, gid: 107 }],
    [`<seclabel type='dynamic' model='selinux'><label>x</label></seclabel><seclabel model='dac'><label>+0:+0</label></seclabel>`, { uid: 0, gid: 0 }],
    ['', null],
  ])('QEMU owner from %s', (seclabel, owner) => {
    expect(parseDomain(dom(seclabel)).qemuOwner).toEqual(owner);
  });

  it.each([['<notxml'], ['<vm><name>x</name></vm>'], ['<domain><devices/></domain>']])('refuses %s with a message', (xml) => {
    expect(() => parseDomain(xml)).toThrow(/domain/);
  });
});

describe('our device on <qemu:commandline>', () => {
  const withArgs = (args: string[]) => `<domain type='qemu' xmlns:q='${QEMU_XML_NS}'><name>vm1</name><devices/>`
    + `<q:commandline>${args.map((a) => `<q:arg value='${a}'/>`).join('')}</q:commandline></domain>`;

  it('finds the JSON -device of examples/libvirt/domain.xml and its chardev socket', () => {
    const d = parseDomain(withArgs(['-chardev', 'socket,id=vub0,path=/run/vhost-user-balloon/vm1.sock,reconnect=1',
      '-device', '{"driver":"vhost-user-balloon","chardev":"vub0","id":"vub0"}']));
    expect(d.device).toEqual({ chardev: 'vub0', socketPath: '/run/vhost-user-balloon/vm1.sock' });
  });

  it.each<[string, string[], ReturnType<typeof findBalloonDevice>]>([
    ['the opts syntax, device first', ['-device', 'vhost-user-balloon-pci,chardev=vb', '-chardev', 'socket,id=vb,path=/s,,x.sock'], { chardev: 'vb', socketPath: '/s,x.sock' }],
    ['driver=', ['-chardev', 'socket,path=/a,id=c', '-device', 'driver=vhost-user-balloon-device,chardev=c'], { chardev: 'c', socketPath: '/a' }],
    ['a chardev that is not on the command line', ['-device', 'vhost-user-balloon,chardev=gone'], { chardev: 'gone', socketPath: null }],
    ['a chardev that is not a socket', ['-chardev', 'pty,id=c', '-device', 'vhost-user-balloon,chardev=c'], { chardev: 'c', socketPath: null }],
    ['another device only', ['-device', 'virtio-balloon-pci', '-chardev', 'socket,id=c,path=/a'], null],
    ['nothing', [], null],
  ])('%s', (_name, args, want) => {
    expect(findBalloonDevice(args)).toEqual(want);
  });

  it('a <commandline> in another namespace is not QEMU\'s', () => {
    const xml = `<domain xmlns:x='urn:other'><name>vm1</name><x:commandline><x:arg value='-device'/><x:arg value='vhost-user-balloon,chardev=c'/></x:commandline></domain>`;
    expect(parseDomain(xml).device).toBeNull();
  });

  it.each([
    ['socket,id=a,path=/p', 'backend', { backend: 'socket', id: 'a', path: '/p' }],
    ['x,,y,server', 'backend', { backend: 'x,y', server: 'on' }],
    ['', 'driver', { driver: '' }],
  ])('parseQemuOpts(%j)', (text, implied, want) => {
    expect(parseQemuOpts(text, implied)).toEqual(want);
  });
});

describe('QEMU identity from qemu.conf', () => {
  it.each([
    ['', { user: 'libvirt-qemu', group: 'libvirt-qemu' }],
    ['#user = "qemu"\n# group = "kvm"\n', { user: 'libvirt-qemu', group: 'libvirt-qemu' }],
    ['user = "qemu"\ngroup = "kvm"\n', { user: 'qemu', group: 'kvm' }],
    ['  user="+0"\n', { user: '+0', group: 'libvirt-qemu' }],
  ])('%j', (text, id) => {
    expect(qemuConfIdentity(text)).toEqual(id);
  });

  const passwd = 'root:x:0:0::/root:/bin/sh\nlibvirt-qemu:x:64055:107::/var/lib/libvirt:/usr/sbin/nologin\n';
  it.each([['+0', 0], ['libvirt-qemu', 64055], ['root', 0], ['4242', 4242], ['nobody-here', null]])('%s -> %s', (spec, id) => {
    expect(resolveId(spec, passwd)).toBe(id);
  });
});
