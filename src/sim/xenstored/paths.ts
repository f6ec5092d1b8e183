import { fail } from './errors.js';

// Same character set as valid_chars() in C xenstored.
const VALID_CHARS = /^[A-Za-z0-9\-/_@]*$/;
const LOCAL_PREFIX = /^\/local\/domain\/(\d{1,5})\//;

export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

/**
 * canonicalize() of C xenstored: relative paths hang under the caller's home,
 * `@` names are only valid where special nodes are allowed.
 */
export function canonicalize(
  path: string,
  domid: number,
  allowSpecial: boolean,
  maxRelPathLength: number,
): string {
  if (!VALID_CHARS.test(path)) fail('EINVAL', `invalid characters in path '${printable(path)}'`);
  if (path.startsWith('@') && !allowSpecial) fail('EINVAL', `special path '${path}' not allowed`);
  const name = path.startsWith('/') || path.startsWith('@') ? path : `${domainPath(domid)}/${path}`;
  if (name.endsWith('/') && name !== '/') fail('EINVAL', `path '${name}' ends with '/'`);
  if (name.includes('//')) fail('EINVAL', `path '${name}' contains '//'`);
  const m = LOCAL_PREFIX.exec(name);
  const localOff = m ? m[0].length : 0;
  if (name.length - localOff > maxRelPathLength) fail('EINVAL', `path '${name}' too long`);
  return name;
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/** True when `path` is `ancestor` itself or lies below it. */
export function isUnder(path: string, ancestor: string): boolean {
  if (path === ancestor) return true;
  if (ancestor === '/') return path.startsWith('/');
  return path.startsWith(ancestor) && path.charAt(ancestor.length) === '/';
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
