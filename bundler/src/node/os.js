// node:os: the little a library asks of the machine; a function has no machine of its own.
export const EOL = "\n";
export const devNull = "/dev/null";
export const platform = () => "linux";
export const type = () => "Linux";
export const arch = () => "x64";
export const release = () => "";
export const version = () => "";
export const machine = () => "x86_64";
export const hostname = () => "localhost";
export const homedir = () => "/";
export const tmpdir = () => "/tmp";
export const endianness = () => "LE";
export const uptime = () => 0;
export const loadavg = () => [0, 0, 0];
export const totalmem = () => 0;
export const freemem = () => 0;
export const availableParallelism = () => 1;
export const cpus = () => [];
export const networkInterfaces = () => ({});
export const userInfo = () => ({ uid: -1, gid: -1, username: "edge", homedir: "/", shell: null });
export const constants = { signals: {}, errno: {}, priority: {} };
export default {
  EOL, devNull, platform, type, arch, release, version, machine, hostname, homedir, tmpdir,
  endianness, uptime, loadavg, totalmem, freemem, availableParallelism, cpus, networkInterfaces,
  userInfo, constants,
};
