/**
 * The ABI of `<linux/acrn.h>` as data: struct layouts, ioctl numbers and constants, all taken
 * from the Rust `acrn-uapi` crate (which is checked against gcc and the system header).
 */

/** Layout of one C struct or union: sizes and byte offsets, nested members as dotted paths. */
export interface StructLayout {
  size: number;
  align: number;
  fields: Record<string, number>;
}

/** The JSON document of `acrn-hsm abi --json`. */
export interface AbiTables {
  structs: Record<string, StructLayout>;
  ioctls: Record<string, number>;
  constants: Record<string, number>;
}

/** The ABI, with ioctl numbers also keyed without their `ACRN_IOCTL_` prefix (`abi.ioctl.CREATE_VM`). */
export interface Abi extends AbiTables {
  /** Ioctl request numbers keyed by short name: `abi.ioctl.CREATE_VM === 0xc030a210`. */
  ioctl: Record<string, number>;
}

/** Builds the {@link Abi} object from the JSON text a binding produces. */
export function buildAbi(json: string): Abi {
  const tables = JSON.parse(json) as AbiTables;
  const ioctl: Record<string, number> = {};
  for (const [name, value] of Object.entries(tables.ioctls)) {
    ioctl[name.replace(/^ACRN_IOCTL_/, '')] = value;
  }
  return Object.freeze({ ...tables, ioctl: Object.freeze(ioctl) });
}
