# pymender: choose the root filesystem partition (A or B) from the boot environment, give a new
# update exactly one trial boot, roll back when it was not committed, and boot the kernel found
# in the chosen partition. U-Boot hush; run by distro boot as boot.scr from the boot partition.
#
# The environment is libubootenv's redundant layout in two files on the boot partition,
# uboot.env (copy 1) and uboot-redund.env (copy 2), each ${pymender_env_size} bytes:
#   crc32 (4 bytes, little endian) | flags (1 byte) | name=value\0 ... \0, zero padded
# The CRC covers the whole data area. fw_env.config names the same two files, so pymender and
# fw_printenv/fw_setenv read and write the very bytes this script does.
# Which copy is current, as libubootenv decides: a copy counts when its CRC is right (and, here,
# its values are valid); of two, the larger flags byte wins, 0 beats 255 (the counter wrapped),
# equal flags pick copy 1. Only the current copy's A/B variables are imported. A file longer than
# the environment counts by its first ${pymender_env_size} bytes, as libubootenv reads it (and so
# pymender and fw_printenv); a shorter one is damaged.
# A write goes to the other copy with flags + 1 (mod 256); the current copy is never touched,
# so a power cut at any instant leaves one whole copy and every reader agrees on it. This script
# writes only while an update is on trial (upgrade_available=1): the trial boot and a rollback.
#
# Variables (Mender's names, same meaning):
#   mender_boot_part       partition number to boot
#   mender_boot_part_hex   the same in hexadecimal (U-Boot's partition syntax is hexadecimal)
#   upgrade_available      1 while a new system is on trial and not yet committed
#   bootcount              0, or 1 once the trial boot has been used up
#
# Set before this file runs (pymender-boot-defines.cmd):
#   pymender_rootfsa_part, pymender_rootfsb_part          partition numbers of rootfs A and B
#   pymender_rootfsa_part_hex, pymender_rootfsb_part_hex  the same in hexadecimal
#   pymender_kernel_root_base   kernel name of the disk ("/dev/mmcblk0p"): root= is the base
#                               plus the partition number; empty: root=PARTUUID=<its id>
#   pymender_kernel_image       kernel path inside the rootfs: an arm64 Image, plain or gzip
#                               compressed (kernel_comp_addr_r/kernel_comp_size are set when
#                               the board leaves them unset); zImage with booti's sibling bootz
#                               is not handled
#   pymender_initrd_image       initramfs path inside the rootfs; empty: none
#   pymender_kernel_devicetree  device tree path inside the rootfs; empty: the device tree
#                               U-Boot runs with (${fdtcontroladdr}), as on QEMU's virt machine
#   pymender_kernel_args        further kernel arguments (console=..., panic=...)
#   pymender_env_size           size of each environment file, hexadecimal (e.g. 0x4000)
# Optional, set by the board's environment:
#   pymender_env_part           partition holding the environment files (default: 1)
#   pymender_scratch_addr       20 MiB of free memory the script may use before it loads the
#                               kernel (default: ${kernel_addr_r})
# Distro boot sets ${devtype} ${devnum} (the disk boot.scr came from); ${kernel_addr_r} and
# ${ramdisk_addr_r} must be set, as they are on every distro boot board.
# Messages stay under 80 columns: firmware consoles wrap longer lines.

if test -z "${pymender_env_part}"; then
    setenv pymender_env_part 1
fi
if test -z "${pymender_scratch_addr}"; then
    setenv pymender_scratch_addr ${kernel_addr_r}
fi
# Scratch memory, 4 MiB apart: env export writes U-Boot's whole CONFIG_ENV_SIZE whatever -s says.
setexpr pymender_addr1 ${pymender_scratch_addr} + 0
setexpr pymender_addr2 ${pymender_scratch_addr} + 0x400000
setexpr pymender_out ${pymender_scratch_addr} + 0x800000
setexpr pymender_backup ${pymender_scratch_addr} + 0xc00000
setexpr pymender_tmp ${pymender_scratch_addr} + 0x1000000
# env import/export -c: crc32 then data, so one byte less than a copy (no flags byte).
setexpr pymender_chk_size ${pymender_env_size} - 1

# --- read both copies ------------------------------------------------------------------------
for pymender_n in 1 2; do
    if test "${pymender_n}" = "1"; then
        setenv pymender_file uboot.env
        setenv pymender_addr ${pymender_addr1}
    else
        setenv pymender_file uboot-redund.env
        setenv pymender_addr ${pymender_addr2}
    fi
    setenv pymender_ok${pymender_n} 0
    setenv mender_boot_part
    setenv mender_boot_part_hex
    setenv upgrade_available
    setenv bootcount
    setenv filesize 0
    if load ${devtype} ${devnum}:${pymender_env_part} ${pymender_addr} ${pymender_file} ${pymender_env_size}; then
        true
    fi
    if itest ${filesize} == ${pymender_env_size}; then
        setexpr pymender_at ${pymender_addr} + 4
        setexpr.b pymender_flags${pymender_n} *${pymender_at}
        # Move the CRC next to the data (over the flags byte), where env import -c wants it.
        cp.b ${pymender_addr} ${pymender_tmp} 4
        setexpr pymender_at ${pymender_addr} + 1
        cp.b ${pymender_tmp} ${pymender_at} 4
        if env import -c ${pymender_at} ${pymender_chk_size} mender_boot_part mender_boot_part_hex upgrade_available bootcount; then
            if test -z "${upgrade_available}"; then setenv upgrade_available 0; fi
            if test -z "${bootcount}"; then setenv bootcount 0; fi
            setenv pymender_ok${pymender_n} 1
            if test "${mender_boot_part}" != "${pymender_rootfsa_part}" -a "${mender_boot_part}" != "${pymender_rootfsb_part}"; then
                setenv pymender_ok${pymender_n} 0
            fi
            if test "${upgrade_available}" != "0" -a "${upgrade_available}" != "1"; then
                setenv pymender_ok${pymender_n} 0
            fi
            if test "${bootcount}" != "0" -a "${bootcount}" != "1"; then
                setenv pymender_ok${pymender_n} 0
            fi
            setenv pymender_part${pymender_n} "${mender_boot_part}"
            setenv pymender_upgrade${pymender_n} "${upgrade_available}"
            setenv pymender_count${pymender_n} "${bootcount}"
        fi
    fi
done

# --- choose the current copy (libubootenv's rule) --------------------------------------------
setenv pymender_src
if test "${pymender_ok1}" = "1" -a "${pymender_ok2}" = "1"; then
    if itest ${pymender_flags1} == ff && itest ${pymender_flags2} == 0; then
        setenv pymender_src 2
    elif itest ${pymender_flags2} == ff && itest ${pymender_flags1} == 0; then
        setenv pymender_src 1
    elif itest ${pymender_flags1} >= ${pymender_flags2}; then
        setenv pymender_src 1
    else
        setenv pymender_src 2
    fi
elif test "${pymender_ok1}" = "1"; then
    echo "pymender: env copy 2 damaged or half written, using copy 1"
    setenv pymender_src 1
elif test "${pymender_ok2}" = "1"; then
    echo "pymender: env copy 1 damaged or half written, using copy 2"
    setenv pymender_src 2
fi

if test "${pymender_src}" = "1"; then
    setenv mender_boot_part "${pymender_part1}"
    setenv upgrade_available "${pymender_upgrade1}"
    setenv bootcount "${pymender_count1}"
    setenv pymender_flags ${pymender_flags1}
    setenv pymender_src_addr ${pymender_addr1}
    setenv pymender_dst_file uboot-redund.env
elif test "${pymender_src}" = "2"; then
    setenv mender_boot_part "${pymender_part2}"
    setenv upgrade_available "${pymender_upgrade2}"
    setenv bootcount "${pymender_count2}"
    setenv pymender_flags ${pymender_flags2}
    setenv pymender_src_addr ${pymender_addr2}
    setenv pymender_dst_file uboot.env
else
    echo "pymender: both env copies damaged, booting rootfs A (partition ${pymender_rootfsa_part})"
    setenv mender_boot_part ${pymender_rootfsa_part}
    setenv upgrade_available 0
    setenv bootcount 0
fi
if test "${mender_boot_part}" = "${pymender_rootfsa_part}"; then
    setenv mender_boot_part_hex ${pymender_rootfsa_part_hex}
    setenv pymender_other_part ${pymender_rootfsb_part}
    setenv pymender_other_part_hex ${pymender_rootfsb_part_hex}
else
    setenv mender_boot_part_hex ${pymender_rootfsb_part_hex}
    setenv pymender_other_part ${pymender_rootfsa_part}
    setenv pymender_other_part_hex ${pymender_rootfsa_part_hex}
fi

# --- trial boot and rollback (DESIGN 3.3) ----------------------------------------------------
setenv pymender_trial 0
if test -n "${pymender_src}" -a "${upgrade_available}" = "1"; then
    if test "${bootcount}" != "0"; then
        echo "pymender: update on partition ${mender_boot_part} not committed, rolling back to partition ${pymender_other_part}"
        setenv mender_boot_part ${pymender_other_part}
        setenv mender_boot_part_hex ${pymender_other_part_hex}
        setenv pymender_other_part ${pymender_rootfsa_part}
        setenv pymender_other_part_hex ${pymender_rootfsa_part_hex}
        if test "${mender_boot_part}" = "${pymender_rootfsa_part}"; then
            setenv pymender_other_part ${pymender_rootfsb_part}
            setenv pymender_other_part_hex ${pymender_rootfsb_part_hex}
        fi
        setenv upgrade_available 0
        setenv bootcount 0
    else
        echo "pymender: trying the update on partition ${mender_boot_part} (its one trial boot)"
        setenv bootcount 1
        setenv pymender_trial 1
    fi

    # Write the other copy: the file's variables with these four changed, flags + 1.
    if itest ${pymender_flags} == ff; then
        setenv pymender_new_flags 0
    else
        setexpr pymender_new_flags ${pymender_flags} + 1
    fi
    # The whole environment becomes the current copy's for three commands, so its other
    # variables are kept; U-Boot's own is saved before and restored right after. Values the
    # three commands need are hush variables, which env import -d leaves alone.
    pm_part=${mender_boot_part}
    pm_hex=${mender_boot_part_hex}
    pm_upgrade=${upgrade_available}
    pm_count=${bootcount}
    pm_backup=${pymender_backup}
    setexpr pymender_at ${pymender_src_addr} + 1
    pm_src=${pymender_at}
    pm_chk_size=${pymender_chk_size}
    setexpr pymender_at ${pymender_out} + 1
    pm_out=${pymender_at}
    setenv pymender_saved 0
    env export -b ${pymender_backup}
    pm_backup_size=${filesize}
    if env import -d -c ${pm_src} ${pm_chk_size}; then
        setenv mender_boot_part ${pm_part}
        setenv mender_boot_part_hex ${pm_hex}
        setenv upgrade_available ${pm_upgrade}
        setenv bootcount ${pm_count}
        env export -c -s ${pm_chk_size} ${pm_out}
        env import -d -b ${pm_backup} ${pm_backup_size}
        # The data must end inside the file: its last byte and the one after it are zero.
        setexpr pymender_at ${pymender_out} + ${pymender_env_size}
        setexpr.b pymender_after *${pymender_at}
        setexpr pymender_at ${pymender_at} - 1
        setexpr.b pymender_last *${pymender_at}
        if itest ${pymender_after} == 0 && itest ${pymender_last} == 0; then
            setexpr pymender_at ${pymender_out} + 1
            cp.b ${pymender_at} ${pymender_tmp} 4
            cp.b ${pymender_tmp} ${pymender_out} 4
            setexpr pymender_at ${pymender_out} + 4
            mw.b ${pymender_at} ${pymender_new_flags} 1
            if save ${devtype} ${devnum}:${pymender_env_part} ${pymender_out} ${pymender_dst_file} ${pymender_env_size}; then
                setenv pymender_saved 1
            fi
        else
            echo "pymender: the environment does not fit in ${pymender_env_size} bytes"
        fi
    else
        env import -d -b ${pm_backup} ${pm_backup_size}
    fi
    setenv mender_boot_part ${pm_part}
    setenv mender_boot_part_hex ${pm_hex}
    setenv upgrade_available ${pm_upgrade}
    setenv bootcount ${pm_count}

    if test "${pymender_saved}" != "1"; then
        echo "pymender: cannot save the environment (${pymender_dst_file})"
        if test "${pymender_trial}" = "1"; then
            # An unrecorded trial could repeat forever: boot the old system instead.
            echo "pymender: not trying the update; booting partition ${pymender_other_part}"
            setenv mender_boot_part ${pymender_other_part}
            setenv mender_boot_part_hex ${pymender_other_part_hex}
            setenv pymender_trial 0
        fi
    fi
fi

# --- boot the chosen partition ---------------------------------------------------------------
if test -n "${pymender_kernel_root_base}"; then
    setenv pymender_kernel_root "${pymender_kernel_root_base}${mender_boot_part}"
elif part uuid ${devtype} ${devnum}:${mender_boot_part_hex} pymender_partuuid; then
    setenv pymender_kernel_root "PARTUUID=${pymender_partuuid}"
else
    setenv pymender_kernel_root ""
fi
setenv bootargs "root=${pymender_kernel_root} ${pymender_kernel_args}"
setenv pymender_root "${devtype} ${devnum}:${mender_boot_part_hex}"

echo "pymender: booting partition ${mender_boot_part}"
echo "pymender: root=${pymender_kernel_root}"
setenv pymender_loaded 0
if load ${pymender_root} ${kernel_addr_r} ${pymender_kernel_image}; then
    setenv pymender_loaded 1
    setenv pymender_kernel_size ${filesize}
    # Free memory starts after the initramfs: the device tree and the compressed kernel go there.
    setenv pymender_free ${ramdisk_addr_r}
    setenv pymender_initrd -
    if test -n "${pymender_initrd_image}"; then
        if load ${pymender_root} ${ramdisk_addr_r} ${pymender_initrd_image}; then
            setenv pymender_initrd ${ramdisk_addr_r}:${filesize}
            setexpr pymender_free ${ramdisk_addr_r} + ${filesize}
        else
            setenv pymender_loaded 0
        fi
    fi
    setexpr pymender_free ${pymender_free} + 0x1fffff
    setexpr pymender_free ${pymender_free} / 0x200000
    setexpr pymender_free ${pymender_free} * 0x200000
    setenv pymender_fdt ${fdtcontroladdr}
    if test -n "${pymender_kernel_devicetree}"; then
        setenv pymender_fdt ${fdt_addr_r}
        if test -z "${pymender_fdt}"; then
            setenv pymender_fdt ${pymender_free}
            setexpr pymender_free ${pymender_free} + 0x200000
        fi
        if load ${pymender_root} ${pymender_fdt} ${pymender_kernel_devicetree}; then
            true
        else
            setenv pymender_loaded 0
        fi
    fi
    if test -z "${kernel_comp_addr_r}"; then
        setenv kernel_comp_addr_r ${pymender_free}
    fi
    if test -z "${kernel_comp_size}"; then
        setenv kernel_comp_size ${pymender_kernel_size}
    fi
    if test "${pymender_loaded}" = "1"; then
        booti ${kernel_addr_r} ${pymender_initrd} ${pymender_fdt}
    fi
fi

# Only reached when the kernel could not be loaded or started. A system on trial is abandoned:
# the reset uses up its trial and the next boot rolls back.
echo "pymender: cannot boot partition ${mender_boot_part}"
if test "${pymender_trial}" = "1"; then
    echo "pymender: resetting to roll back"
    sleep 3
    reset
fi
