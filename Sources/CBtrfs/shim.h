#ifndef SHADOWCOPY_CBTRFS_SHIM_H
#define SHADOWCOPY_CBTRFS_SHIM_H
// The btrfs ioctls shadowcopy uses (no btrfs-progs at run time). Only the Btrfs module imports
// this. ioctl is variadic in C, so each request gets a typed inline wrapper Swift can call.
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <linux/btrfs_tree.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <string.h>
#include <errno.h>

// Makes a snapshot of the subvolume open at `source_fd` named `name` inside the directory open at
// `dest_dir_fd`; read-only when `read_only`. Returns 0 or an errno.
static inline int cbtrfs_snapshot(int dest_dir_fd, int source_fd, const char *name, int read_only) {
    struct btrfs_ioctl_vol_args_v2 args;
    memset(&args, 0, sizeof(args));
    args.fd = source_fd;
    args.flags = read_only ? BTRFS_SUBVOL_RDONLY : 0;
    if (strlen(name) >= sizeof(args.name)) return ENAMETOOLONG;
    strncpy(args.name, name, sizeof(args.name) - 1);
    return ioctl(dest_dir_fd, BTRFS_IOC_SNAP_CREATE_V2, &args) == 0 ? 0 : errno;
}

// Deletes the subvolume `name` inside the directory open at `dir_fd`. Returns 0 or an errno.
static inline int cbtrfs_destroy(int dir_fd, const char *name) {
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof(args));
    if (strlen(name) >= sizeof(args.name)) return ENAMETOOLONG;
    strncpy(args.name, name, sizeof(args.name) - 1);
    return ioctl(dir_fd, BTRFS_IOC_SNAP_DESTROY, &args) == 0 ? 0 : errno;
}

static inline int cbtrfs_is_btrfs(int fd) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -errno;
    return s.f_type == BTRFS_SUPER_MAGIC;
}

// The inode number of every subvolume's root directory.
static const unsigned long long cbtrfs_first_free_objectid = BTRFS_FIRST_FREE_OBJECTID;
#endif
