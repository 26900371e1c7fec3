export { AdminServer, type AdminHandler, type AdminReply, type AdminRequest, type AdminServerOptions, type ReplyStream } from './server.js';
export { registerAdminRoutes, type AdminContext } from './routes.js';
