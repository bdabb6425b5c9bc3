/**
 * `openrouter-rx/dashboard`: a live web page of a pool's key and model health, fed by
 * `pool.health$` over Server-Sent Events. Node only (it serves HTTP); the page itself is one
 * self-contained HTML document.
 */
export { createDashboardServer } from './server.js';
export type { DashboardServer, DashboardServerOptions } from './server.js';
export { dashboardHandler } from './handler.js';
export type { DashboardHandler, DashboardOptions } from './handler.js';
export { dashboardPage } from './page.js';
export type { DashboardPageOptions } from './page.js';
export type { HealthSource } from './events.js';
export { PoolMetrics } from './metrics.js';
export type { MetricsSource } from './metrics.js';
