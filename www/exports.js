// Exports of a result: COCO instances, YOLO-seg, LabelMe and Pascal VOC, written by the core's
// writers (src/segment/export/) in the model worker, so that the page, <word-mask>, a
// ModelClient's results and `wordmask segment --images` write the same files for one image.
//
//   const result = await client.segment({ rgba, width, height, labels: 'cat, dog' });
//   const coco = await result.toCOCO({ fileName: 'photo.jpg' });   // {images, categories, annotations}
//   const { txt, dataYaml } = await result.toYOLO();
//   const labelme = await result.toLabelMe({ fileName: 'photo.jpg' });
//   const { classPng, objectPng, labelmap } = await result.toVOC();
//
// Objects come from sharp edges or Name everything when the result has them, else they are the
// words' connected regions (as the CLI's without `--sam`); a Point-mode result is its one object.

/** The formats, as the CLI's `--format` names them. */
export const FORMATS = ['coco', 'yolo', 'labelme', 'voc'];

const text = (bytes) => new TextDecoder().decode(bytes);

/**
 * The request `client.exportImage` takes for a result held as plain data: `source` is
 * `{labels, width, height, labelMap?, confidence?, objects?, instances?, masks?}` (objects as the
 * core gives them, `{id, class, label, score}`, each drawn by its id in `instances` or by its own
 * mask in `masks`); `options`: `{fileName, imageId, imagePath, polygons, minArea}`.
 */
export function exportRequest(source, formats, options = {}) {
  const { labels, width, height, labelMap, confidence, objects, instances, masks } = source;
  const { fileName = 'image.png', imageId = 1, imagePath, polygons = false, minArea = 0 } = options;
  const request = {
    labels, formats, width, height, fileName, imageId, polygons, minArea,
    ...(imagePath != null ? { imagePath } : {}),
    ...(objects ? { objects: objects.map(({ id, class: c, label, score }) => ({ id, class: c ?? null, label: label ?? null, score: score ?? null })) } : {}),
  };
  return { request, labelMap, confidence, instances, masks };
}

/**
 * `target` with `toCOCO`, `toYOLO`, `toLabelMe` and `toVOC` (not enumerable: the result still
 * clones and posts as plain data), each asking `client`'s worker to write one format of
 * `source` (as `exportRequest` reads it). Options of each: `fileName` (default 'image.png'),
 * `imageId` (1), `minArea` (0: every object); `toCOCO` also `polygons`, `toLabelMe` also
 * `imagePath` (default: the file name).
 */
export function withExports(target, client, source) {
  const one = async (format, options) => (await client.exportImage(exportRequest(source, [format], options))).files;
  const methods = {
    /** COCO instances: `{images, categories, annotations}` with RLE masks (or polygons). */
    async toCOCO(options) {
      return JSON.parse(text((await one('coco', options))[0].bytes));
    },
    /** YOLO-seg: the image's label file, and `data.yaml` (the class list). */
    async toYOLO(options) {
      const [file] = await one('yolo', options);
      const [yaml] = (await client.exportFolder({ labels: source.labels, formats: ['yolo'], yoloPath: '.' }, [])).files;
      return { txt: text(file.bytes), dataYaml: text(yaml.bytes) };
    },
    /** LabelMe: the JSON file's contents (polygons, image path, size). */
    async toLabelMe(options) {
      return JSON.parse(text((await one('labelme', options))[0].bytes));
    },
    /** Pascal VOC: the class and object palette PNGs, and `labelmap.txt`. */
    async toVOC(options) {
      const [classPng, objectPng] = await one('voc', options);
      const [list] = (await client.exportFolder({ labels: source.labels, formats: ['voc'] }, [])).files;
      return { classPng: classPng.bytes, objectPng: objectPng.bytes, labelmap: text(list.bytes) };
    },
  };
  for (const [name, value] of Object.entries(methods)) {
    Object.defineProperty(target, name, { value, enumerable: false, configurable: true, writable: true });
  }
  return target;
}
