// The built-ins vmpk calls while one of its gates is open, or to decide what
// a gate covers, captured when this module loads (as Node's own
// "primordials"). Code that runs later can replace Array.prototype.push,
// TypedArray.prototype.set, AsyncLocalStorage.prototype.run or BigInt on the
// globals, but not these copies: a replaced one would otherwise run inside
// a gate vmpk opened (and write into a code cache after its scan, or read a
// key). Methods are uncurried (`fill(view, 0xcc, 0, n)`), so no later change
// to Function.prototype.call or .apply reaches them either. Code that ran
// before vmpk was imported is trusted: it could have replaced them first.
import { AsyncLocalStorage, executionAsyncResource as nodeExecutionAsyncResource } from 'node:async_hooks';
import { types } from 'node:util';

const { bind, call } = Function.prototype;
/** f.call as a plain function: uncurryThis(Array.prototype.pop)(array). */
const uncurryThis = bind.bind(call) as <T, A extends unknown[], R>(f: (this: T, ...args: A) => R) => (self: T, ...args: A) => R;

const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;

export const TypedArrayPrototypeFill = uncurryThis(Uint8Array.prototype.fill) as (self: Uint8Array, value: number, start: number, end: number) => Uint8Array;
export const TypedArrayPrototypeSet = uncurryThis(Uint8Array.prototype.set) as (self: Uint8Array, src: ArrayLike<number>, offset: number) => void;
export const TypedArrayPrototypeSubarray = uncurryThis(Uint8Array.prototype.subarray) as (self: Uint8Array, start: number, end: number) => Uint8Array;
export const TypedArrayPrototypeGetLength = uncurryThis(Object.getOwnPropertyDescriptor(TypedArrayPrototype, 'length')!.get!) as (self: Uint8Array) => number;
export const ObjectFreeze = Object.freeze;
export const ObjectDefineProperty = Object.defineProperty;
export const BigIntCtor = BigInt;
export const NumberIsSafeInteger = Number.isSafeInteger;
export const ReflectApply = Reflect.apply;
export const FinalizationRegistryCtor = FinalizationRegistry;
export const AsyncLocalStorageRun = uncurryThis(AsyncLocalStorage.prototype.run) as <S, R>(self: AsyncLocalStorage<S>, store: S, fn: () => R) => R;
export const AsyncLocalStorageGetStore = uncurryThis(AsyncLocalStorage.prototype.getStore) as <S>(self: AsyncLocalStorage<S>) => S | undefined;
export const executionAsyncResource = nodeExecutionAsyncResource;
export const isPromise = types.isPromise;
export const isProxy = types.isProxy;
export const isUint8Array = types.isUint8Array;
export { uncurryThis };
