// Brand checks for the public classes: a method or getter called on an object
// that is not a real instance (Key.prototype.with.call({}, ...), an object
// made by Object.create(Key.prototype), a spread copy) throws vmpk's
// INVALID_ARGUMENT instead of V8's "Cannot read private member" TypeError.
//
// Each class has a getter that only reads a private field: calling it is the
// brand check (it throws a TypeError exactly when the object lacks the field).
// The wrappers cost one extra getter call per method call; they are installed
// once, on the prototypes, when index.ts is loaded.
import { describe, invalidArgument } from './errors.js';
import { KeyBatch } from './batch.js';
import { Key } from './key.js';
import { Region } from './region.js';
import { Runtime } from './runtime.js';

type AnyFn = (this: unknown, ...args: unknown[]) => unknown;

/** Wraps every method and getter of `cls.prototype` with a brand check through the getter `brand`. */
export function brandMethods(cls: { prototype: object; name: string }, what: string, brand: string): void {
  const proto = cls.prototype;
  const brandGet = Object.getOwnPropertyDescriptor(proto, brand)?.get as AnyFn | undefined;
  if (brandGet === undefined) throw new Error(`brand: ${cls.name}.prototype has no getter '${brand}'`);
  const isInstance = (o: unknown): boolean => {
    if (typeof o !== 'object' || o === null) return false;
    try {
      brandGet.call(o);
      return true;
    } catch {
      return false;
    }
  };
  const foreign = (self: unknown, member: string) =>
    invalidArgument(`${what}.${member} called on ${describe(self)}, which is not a ${cls.name} made by vmpk`);
  for (const name of Object.getOwnPropertyNames(proto)) {
    if (name === 'constructor') continue;
    const d = Object.getOwnPropertyDescriptor(proto, name)!;
    if (typeof d.value === 'function') {
      const method = d.value as AnyFn;
      // withAsync() and other promise-returning methods reject rather than throw.
      const async = name === 'withAsync';
      d.value = {
        // Three fixed parameters (no method takes more): no rest array on the gate's hot path.
        [name](this: unknown, a: unknown, b: unknown, c: unknown) {
          if (!isInstance(this)) {
            const err = foreign(this, `${name}()`);
            if (async) return Promise.reject(err);
            throw err;
          }
          return method.call(this, a, b, c);
        },
      }[name];
    } else if (d.get !== undefined) {
      const get = d.get as AnyFn;
      d.get = {
        [name](this: unknown) {
          if (!isInstance(this)) throw foreign(this, name);
          return get.call(this);
        },
      }[name];
    } else continue;
    Object.defineProperty(proto, name, d);
  }
}

let installed = false;
/** Installs the checks on Key, Region, Runtime and KeyBatch (once). */
export function installBrandChecks(): void {
  if (installed) return;
  installed = true;
  brandMethods(Key, 'key', 'name');
  brandMethods(Region, 'region', 'address');
  brandMethods(Runtime, 'runtime', 'backend');
  brandMethods(KeyBatch, 'batch', 'regionSize');
}
