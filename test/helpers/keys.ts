// The access keys the tests use, written once: the app's own key, and Wave's well-known default
// (valid only on loopback, where every test server listens).
import { basicAuth } from '../../lib/http/access-keys.js';

/** The app's key: `accessKeys: { [APP_KEY.id]: APP_KEY.secret }` on the server. */
export const APP_KEY = Object.freeze({ id: 'app', secret: 'app-secret' });
/** Its `Authorization` header. */
export const APP_AUTH = basicAuth(APP_KEY.id, APP_KEY.secret);
/** The same key as `connect()` takes it. */
export const APP_CLIENT_KEY = Object.freeze({ accessKeyId: APP_KEY.id, accessKeySecret: APP_KEY.secret });
/** Wave's default key's `Authorization` header. */
export const DEFAULT_AUTH = basicAuth('access_key_id', 'access_key_secret');
