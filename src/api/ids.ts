/** Branded identifiers: a SandboxId cannot be passed where a WorkerId is expected. */
export type FunctionName = string & { readonly __brand: 'FunctionName' };
export type SandboxId = string & { readonly __brand: 'SandboxId' };
export type WorkerId = string & { readonly __brand: 'WorkerId' };
export type DataplaneId = string & { readonly __brand: 'DataplaneId' };

export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
