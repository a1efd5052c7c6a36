import { describe, expect, it } from 'vitest';
import { parseDomain, VUB_XML_NS } from '../../src/hook/domain.js';
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
