// node:perf_hooks.
export const performance = globalThis.performance;
export const PerformanceObserver = globalThis.PerformanceObserver;
export default { performance, PerformanceObserver };
