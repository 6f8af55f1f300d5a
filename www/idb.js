// One IndexedDB database with one object store, opened for what the page and the worker keep
// across visits (the words' embeddings, a folder's results). Resolves to null where IndexedDB
// is missing or refused (private windows), so that keeping is only ever a bonus.

/** The database `name` (version 1) holding the object store `store`, or null. */
export function openStore(name, store) {
  if (typeof indexedDB === 'undefined') return Promise.resolve(null);
  return new Promise((resolve) => {
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(store);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => resolve(null);
    request.onblocked = () => resolve(null);
  });
}
