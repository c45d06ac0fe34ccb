/** An HTTP Basic `Authorization` value (RFC 7617) for Wave's access key id and secret, in UTF-8. */
export function basicAuth(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`, 'utf8').toString('base64')}`;
}
