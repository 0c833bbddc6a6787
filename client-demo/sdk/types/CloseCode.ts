// Generated from arena_protocol::CloseCode by protocol/src/typescript.rs. Do not edit.

/** The close codes the server sends (PROTOCOL.md, "Close codes"). */
export type CloseCode =
  /** server shutting down */
  | 1001
  /** policy violation */
  | 1008
  /** message too big */
  | 1009
  /** too many invalid messages */
  | 4000
  /** session revoked */
  | 4001
  /** token expired */
  | 4002
  /** removed by an admin */
  | 4003
  /** logged in elsewhere */
  | 4004;
