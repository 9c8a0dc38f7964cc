/**
 * `task` runs once at the end of the current turn of the event loop however many times it is asked
 * for within it: many cache changes or subscription changes in one turn become one flush or one
 * upstream request.
 */
export function atEndOfTurn(task: () => void): () => void {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      task();
    });
  };
}
