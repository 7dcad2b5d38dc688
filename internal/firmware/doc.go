// Package firmware is Flasher's firmware vocabulary: version schemes and the one comparison of
// versions that planning and verification share, requirement constraints, vendor/model/slug
// matching, the default install order and the one checksum grammar. It is a pure leaf: it
// imports nothing of Flasher's, does no I/O and keeps no state, so every layer (inventory
// sources, the planner, the executors, the artifact cache, the agent) can use the same words.
package firmware
