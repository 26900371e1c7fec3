export { AdminServer, type AdminHandler, type AdminReply, type AdminRequest, type AdminServerOptions } from './server.js';
export { registerAdminRoutes, type AdminContext } from './routes.js';
