/** Connection state of a client: first connect, live, after a loss, or closed by the app. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";
