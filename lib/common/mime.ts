// The built-in extension → Content-Type table. Deliberately small and explicit: a type that is not
// here is served as `application/octet-stream`, which browsers download instead of rendering.
// Written as nginx writes mime.types, a type and its extensions a line, and read once at load.

const TABLE = `
  # text and code (charset given, so a browser never has to guess — and never sniffs into HTML)
  text/html; charset=utf-8                  html htm
  text/css; charset=utf-8                   css
  text/javascript; charset=utf-8            js mjs cjs   # RFC 9239
  application/json; charset=utf-8           json map
  application/manifest+json; charset=utf-8  webmanifest
  application/x-ipynb+json; charset=utf-8   ipynb
  application/geo+json; charset=utf-8       geojson
  application/ld+json; charset=utf-8        jsonld
  application/xml; charset=utf-8            xml
  text/plain; charset=utf-8                 txt text log
  text/csv; charset=utf-8                   csv
  text/tab-separated-values; charset=utf-8  tsv
  text/markdown; charset=utf-8              md markdown
  application/yaml; charset=utf-8           yaml yml   # RFC 9512
  application/toml; charset=utf-8           toml
  text/calendar; charset=utf-8              ics
  text/vtt; charset=utf-8                   vtt
  application/x-subrip; charset=utf-8       srt
  # images
  image/svg+xml                             svg
  image/png                                 png
  image/apng                                apng
  image/jpeg                                jpg jpeg jfif
  image/gif                                 gif
  image/webp                                webp
  image/avif                                avif
  image/x-icon                              ico
  image/bmp                                 bmp
  image/tiff                                tif tiff
  # audio and video
  video/mp4                                 mp4 m4v
  video/webm                                webm
  video/ogg                                 ogv
  video/quicktime                           mov
  video/x-matroska                          mkv
  audio/mpeg                                mp3
  audio/mp4                                 m4a
  audio/aac                                 aac
  audio/wav                                 wav
  audio/ogg                                 ogg oga opus
  audio/flac                                flac
  # fonts
  font/woff                                 woff
  font/woff2                                woff2
  font/ttf                                  ttf
  font/otf                                  otf
  application/vnd.ms-fontobject             eot
  # documents, data and archives
  application/pdf                           pdf   # so a PDF renders in a frame
  application/wasm                          wasm
  application/zip                           zip
  application/gzip                          gz tgz
  application/x-tar                         tar
  application/x-bzip2                       bz2
  application/x-xz                          xz
  application/zstd                          zst
  application/x-7z-compressed               7z
  application/vnd.apache.parquet            parquet
  application/vnd.apache.arrow.file         arrow
  application/vnd.openxmlformats-officedocument.spreadsheetml.sheet  xlsx
  application/vnd.openxmlformats-officedocument.wordprocessingml.document  docx
  application/vnd.openxmlformats-officedocument.presentationml.presentation  pptx
  application/vnd.ms-excel                  xls
  application/msword                        doc
  application/vnd.ms-powerpoint             ppt
  application/vnd.oasis.opendocument.text   odt
  application/vnd.oasis.opendocument.spreadsheet  ods
  application/rtf                           rtf
  application/epub+zip                      epub
`;

const TYPES = new Map<string, string>();
for (const line of TABLE.split('\n')) {
  const row = line.replace(/#.*/, '').trim();
  if (row === '') continue;
  const cut = row.search(/\s{2,}/);
  const type = row.slice(0, cut);
  for (const ext of row.slice(cut).trim().split(' ')) TYPES.set(ext, type);
}

export const DEFAULT_TYPE = 'application/octet-stream';

/** The Content-Type for a file name, from its last extension, case-insensitively. */
export function contentTypeFor(name: string): string {
  const dot = name.lastIndexOf('.');
  if (dot < 0 || dot < name.lastIndexOf('/')) return DEFAULT_TYPE;
  const ext = name.slice(dot + 1).toLowerCase();
  return TYPES.get(ext) ?? DEFAULT_TYPE;
}
