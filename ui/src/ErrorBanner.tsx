import type { AppError } from "./bindings";

/** A problem the user can act on, with its typed kind kept for tests and styling. */
export function ErrorBanner({ error, onRetry }: { error: AppError; onRetry: () => void }) {
  return (
    <div className="error-banner" id="app-error" role="alert" data-kind={error.kind}>
      <strong>{title(error.kind)}</strong>
      <span className="error-message">{error.message}</span>
      <button type="button" onClick={onRetry}>
        Refresh
      </button>
    </div>
  );
}

function title(kind: AppError["kind"]): string {
  switch (kind) {
    case "no_input_device":
      return "No input device";
    case "device_not_found":
      return "Device gone";
    case "device_busy":
      return "Device busy";
    case "permission_denied":
      return "Microphone access denied";
    case "audio_system_unavailable":
      return "Audio system unavailable";
    case "unsupported":
      return "Format not supported";
    case "invalid_input":
      return "Check your input";
    case "settings":
      return "Settings not saved";
    case "room":
      return "Room";
    case "internal":
      return "Something went wrong";
  }
}
