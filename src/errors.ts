// Error classes. Each carries a `code`, as Node's own errors do, and is branded with a
// Symbol.for() key so that `instanceof` holds across the ESM and CJS copies of evy.

type ErrorClass = abstract new (...args: any[]) => Error;

/** Makes `x instanceof cls` true for instances made by another copy of evy (ESM vs CJS build). */
export function brand(cls: ErrorClass, name: string): void {
  const key = Symbol.for(`evy.brand.${name}`);
  Object.defineProperty(cls.prototype, key, { value: true });
  const ordinary = Function.prototype[Symbol.hasInstance];
  Object.defineProperty(cls, Symbol.hasInstance, {
    value(this: ErrorClass, x: unknown): boolean {
      if (ordinary.call(this, x)) return true;
      return this === cls && typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[key] === true;
    },
  });
}

/** Base class of evy's state errors (wrong use of a primitive, not a wrong argument). */
export class EvyError extends Error {
  code: string;
  constructor(message: string, code = 'ERR_EVY') {
    super(message);
    this.name = 'EvyError';
    this.code = code;
  }
}
brand(EvyError, 'EvyError');

/** Raised in a thread killed without an explicit error. */
export class GreenletExit extends Error {
  code = 'ERR_EVY_GREENLET_EXIT';
  constructor(message = 'green thread killed') {
    super(message);
    this.name = 'GreenletExit';
  }
}
brand(GreenletExit, 'GreenletExit');

/** `Queue.get` found nothing (non-blocking, or the timeout expired). */
export class Empty extends Error {
  code = 'ERR_EVY_QUEUE_EMPTY';
  constructor(message = 'queue is empty') {
    super(message);
    this.name = 'Empty';
  }
}
brand(Empty, 'Empty');

/** `Queue.put` found no room (non-blocking, or the timeout expired). */
export class Full extends Error {
  code = 'ERR_EVY_QUEUE_FULL';
  constructor(message = 'queue is full') {
    super(message);
    this.name = 'Full';
  }
}
brand(Full, 'Full');

/** A put to, or a get from an empty, queue after `close()`. */
export class QueueClosed extends Error {
  code = 'ERR_EVY_QUEUE_CLOSED';
  constructor(message = 'queue is closed') {
    super(message);
    this.name = 'QueueClosed';
  }
}
brand(QueueClosed, 'QueueClosed');

/** Thrown by a `serve` handler to make `serve` return. */
export class StopServe extends Error {
  code = 'ERR_EVY_STOP_SERVE';
  constructor(message = 'stop serving') {
    super(message);
    this.name = 'StopServe';
  }
}
brand(StopServe, 'StopServe');

/** A GreenSocket operation outlived the socket's `settimeout` (eventlet's socket.timeout). */
export class SocketTimeout extends Error {
  code = 'ERR_EVY_SOCKET_TIMEOUT';
  constructor(message = 'timed out') {
    super(message);
    this.name = 'SocketTimeout';
  }
}
brand(SocketTimeout, 'SocketTimeout');

// Argument errors: Node's classes, codes and message shape ('The "name" argument must be ... Received ...').
// Promise-returning APIs hand them back as a rejected promise, the others throw them (docs/core.md).

/** Gives `err` a Node-style `code`: the one place a code is attached to an error made from a builtin class. */
export function withCode<E extends Error>(err: E, code: string): E & { code: string } {
  (err as E & { code: string }).code = code;
  return err as E & { code: string };
}

/** TypeError with Node's code for a wrong argument type. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  return withCode(new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`), 'ERR_INVALID_ARG_TYPE');
}

/** RangeError with Node's code for an argument outside its range. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  return withCode(new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`), 'ERR_OUT_OF_RANGE');
}

/** TypeError with Node's code for an argument of the right type and a wrong value; `reason` completes "The "name" argument ...". */
export function invalidArgValue(name: string, reason: string, actual: unknown): TypeError {
  return withCode(new TypeError(`The "${name}" argument ${reason}. Received ${describe(actual)}`), 'ERR_INVALID_ARG_VALUE');
}

/** `new` on a class only evy makes (Node's ERR_ILLEGAL_CONSTRUCTOR): such an object would never work (a thread that never runs). */
export function illegalConstructor(name: string, use: string): TypeError {
  return withCode(new TypeError(`Illegal constructor: ${name} objects are made by ${use}`), 'ERR_ILLEGAL_CONSTRUCTOR');
}

/** RangeError with Node's code for a port outside 0..65535 (what net.connect throws). */
export function badPort(name: string, port: unknown): RangeError {
  return withCode(new RangeError(`The port of "${name}" must be an integer >= 0 and < 65536. Received ${describe(port)}`), 'ERR_SOCKET_BAD_PORT');
}

function describe(x: unknown): string {
  if (x === null || x === undefined) return String(x);
  if (typeof x === 'function') return `function ${x.name || '<anonymous>'}`;
  if (typeof x === 'object') return `an instance of ${(x as object).constructor?.name ?? 'Object'}`;
  if (typeof x === 'string') return `type string (${JSON.stringify(x.length > 28 ? `${x.slice(0, 25)}...` : x)})`;
  return `type ${typeof x} (${String(x)})`;
}
