/*
 * sp_crc.h - CRC-32C (Castagnoli), used for segment headers, file headers
 * and stored values.  Table-driven, slicing-by-8; no hardware dependency.
 */
#ifndef SP_CRC_H
#define SP_CRC_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32C: start with crc = 0. */
uint32_t sp_crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* SP_CRC_H */
