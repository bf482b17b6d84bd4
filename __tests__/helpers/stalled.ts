/**
 * Clients that send a request and never read the answer, for memory tests.
 * Most connect over a Unix socket to the same app: its small kernel buffers
 * make a stalled client's backlog stay in the server (where the bound must
 * hold) instead of in the kernel, and it needs no ephemeral ports.
 */
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { TestServer } from "./sse";

export interface StalledClients {
  /** Opens a client on the Unix socket (or `connect`'s socket), sends `GET requestPath` with `headers`, and stops reading. */
  stall(requestPath: string, headers?: Record<string, string>, connect?: () => net.Socket): net.Socket;
  /** The clients opened so far (destroy them with {@link destroyAll}). */
  readonly sockets: net.Socket[];
  destroyAll(): void;
  /** Destroys the clients and closes the Unix socket server. */
  close(): Promise<void>;
}

/** Serves `srv`'s app on a fresh Unix socket as well, for stalled clients. */
export async function stalledClients(srv: TestServer, name: string): Promise<StalledClients> {
  const unixPath = path.join(os.tmpdir(), `sse-${name}-${process.pid}-${Date.now()}.sock`);
  const unixServer = http.createServer(srv.app);
  await new Promise<void>((resolve) => unixServer.listen(unixPath, resolve));
  const sockets: net.Socket[] = [];
  const destroyAll = () => {
    for (const s of sockets.splice(0)) s.destroy();
  };
  return {
    sockets,
    stall(requestPath, headers = {}, connect = () => net.connect(unixPath)) {
      const socket = connect();
      socket.on("error", () => undefined);
      const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
      socket.write(`GET ${requestPath} HTTP/1.1\r\nHost: 127.0.0.1\r\n${lines}\r\n`);
      socket.pause();
      sockets.push(socket);
      return socket;
    },
    destroyAll,
    async close() {
      destroyAll();
      unixServer.closeAllConnections();
      await new Promise<void>((resolve) => unixServer.close(() => resolve()));
    },
  };
}
