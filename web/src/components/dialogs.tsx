// Confirmation before every action that changes the cluster, and the notices that report what
// an action did. The confirmation is a modal <dialog>: focus moves into it, Escape cancels,
// and for destructive actions Cancel has the focus, so a stray Enter changes nothing.

import { useEffect, useRef, useState } from "preact/hooks";

export interface ConfirmOptions {
  title: string;
  body: string;
  confirmLabel: string;
  /** Drain, remove, discard: Cancel gets the focus and the button is red. */
  danger?: boolean;
}

type Pending = ConfirmOptions & { resolve: (ok: boolean) => void };

let show: ((pending: Pending) => void) | null = null;

/** Asks the operator; resolves true only on an explicit confirmation. */
export function confirmAction(options: ConfirmOptions): Promise<boolean> {
  return new Promise((resolve) => {
    if (show === null) resolve(false);
    else show({ ...options, resolve });
  });
}

export function ConfirmHost() {
  const ref = useRef<HTMLDialogElement>(null);
  const [pending, setPending] = useState<Pending | null>(null);
  useEffect(() => {
    show = (p) => setPending(p);
    return () => {
      show = null;
    };
  }, []);
  useEffect(() => {
    const dialog = ref.current;
    if (pending !== null && dialog !== null && !dialog.open) dialog.showModal();
  }, [pending]);
  const close = (ok: boolean) => {
    ref.current?.close();
    pending?.resolve(ok);
    setPending(null);
  };
  return (
    <dialog
      ref={ref}
      class="confirm"
      aria-labelledby="confirm-title"
      aria-describedby="confirm-body"
      onCancel={(e) => {
        e.preventDefault();
        close(false);
      }}
    >
      {pending !== null && (
        <form
          method="dialog"
          onSubmit={(e) => {
            e.preventDefault();
            close(true);
          }}
        >
          <h2 id="confirm-title">{pending.title}</h2>
          <p id="confirm-body">{pending.body}</p>
          <div class="buttons">
            <button type="button" onClick={() => close(false)} autoFocus={pending.danger === true}>
              Cancel
            </button>
            <button type="submit" class={pending.danger === true ? "danger" : "primary"} autoFocus={pending.danger !== true}>
              {pending.confirmLabel}
            </button>
          </div>
        </form>
      )}
    </dialog>
  );
}

export interface Notice {
  id: number;
  kind: "info" | "error";
  text: string;
}

const NOTICES_SHOWN_MAX = 4;
const INFO_NOTICE_MS = 8_000;
let nextNoticeId = 1;
let notices: Notice[] = [];
const noticeListeners = new Set<(list: Notice[]) => void>();

function setNotices(list: Notice[]): void {
  notices = list;
  for (const l of noticeListeners) l(notices);
}

/** Tells the operator what an action did (info fades; errors stay until dismissed). */
export function notify(kind: Notice["kind"], text: string): void {
  const notice = { id: nextNoticeId++, kind, text };
  setNotices([...notices, notice].slice(-NOTICES_SHOWN_MAX));
  if (kind === "info") setTimeout(() => setNotices(notices.filter((n) => n.id !== notice.id)), INFO_NOTICE_MS);
}

export function Notices() {
  const [list, setList] = useState(notices);
  useEffect(() => {
    noticeListeners.add(setList);
    return () => {
      noticeListeners.delete(setList);
    };
  }, []);
  return (
    <div class="notices" role="status" aria-live="polite">
      {list.map((n) => (
        <div key={n.id} class={`notice ${n.kind}`} data-kind={n.kind}>
          <span>{n.text}</span>
          <button type="button" class="link" aria-label="Dismiss" onClick={() => setNotices(notices.filter((x) => x.id !== n.id))}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
