# ZynClone guest module: ask ZynClone, from inside this Windows VM, for an
# operation on this VM's clone. It writes one request into this domain's
# XenStore area through the PV drivers' WMI interface (root\wmi, classes
# XenProject* or Citrix*) and reads the answer that dom0 writes back.
# Protocol: docs/xenstore-contract.md, "Guest requests". The VM is never
# named: a guest can only ask about itself. Needs administrator rights (the
# root\wmi namespace is for administrators only).

Set-StrictMode -Version 3.0

$script:RequestNode = 'data/zynclone/request'
$script:ReplyRoot = 'zynclone'
$script:ClassPrefixes = @('XenProject', 'Citrix')
$script:ResendAfterSec = 2

function Open-ZcSession {
    # A XenStore session of the PV drivers: the first class prefix that exists.
    foreach ($prefix in $script:ClassPrefixes) {
        $base = Get-CimInstance -Namespace 'root\wmi' -ClassName "${prefix}XenStoreBase" -ErrorAction SilentlyContinue
        if ($null -eq $base) {
            continue
        }
        $added = Invoke-CimMethod -InputObject $base -MethodName 'AddSession' -Arguments @{ Id = 'ZynClone' }
        $sessionId = [uint32]$added.SessionId
        $session = Get-CimInstance -Namespace 'root\wmi' -ClassName "${prefix}XenStoreSession" -Filter "SessionId=$sessionId"
        return [pscustomobject]@{ Prefix = $prefix; Session = $session }
    }
    throw [System.InvalidOperationException]::new(
        'No XenStore WMI interface (XenProjectXenStoreBase or CitrixXenStoreBase in root\wmi): are the Xen PV drivers installed, and is this an elevated session?')
}

function Close-ZcSession {
    param($Zc)
    if ($null -ne $Zc) {
        Invoke-CimMethod -InputObject $Zc.Session -MethodName 'EndSession' -ErrorAction SilentlyContinue | Out-Null
    }
}

function Get-ZcValue {
    # The value at a path relative to this domain's home, or $null when absent.
    param($Zc, [string]$Path)
    try {
        $r = Invoke-CimMethod -InputObject $Zc.Session -MethodName 'GetValue' -Arguments @{ PathName = $Path } -ErrorAction Stop
        return [string]$r.value
    }
    catch {
        return $null
    }
}

function Set-ZcValue {
    param($Zc, [string]$Path, [string]$Value)
    Invoke-CimMethod -InputObject $Zc.Session -MethodName 'SetValue' -Arguments @{ PathName = $Path; value = $Value } -ErrorAction Stop | Out-Null
}

function Get-ZcReply {
    # Every node of a reply (GetChildren gives full paths; the last part is the field).
    param($Zc, [string]$Id)
    $path = "$script:ReplyRoot/reply/$Id"
    $fields = @{}
    try {
        $r = Invoke-CimMethod -InputObject $Zc.Session -MethodName 'GetChildren' -Arguments @{ PathName = $path } -ErrorAction Stop
    }
    catch {
        return $fields
    }
    foreach ($child in @($r.children.ChildNodes)) {
        $name = ([string]$child).Split('/')[-1]
        $value = Get-ZcValue -Zc $Zc -Path "$path/$name"
        if ($null -ne $value) {
            $fields[$name] = $value
        }
    }
    return $fields
}

function New-ZcRequestId {
    return [guid]::NewGuid().ToString('N')
}

function Invoke-ZcRequest {
    param(
        [Parameter(Mandatory)] [string]$Op,
        [string[]]$Arguments = @(),
        [string]$Id,
        [switch]$Wait,
        [int]$TimeoutSec
    )
    if (-not $Id) {
        $Id = New-ZcRequestId
    }
    $request = (@($Id, $Op) + $Arguments) -join ' '
    $zc = Open-ZcSession
    try {
        if ((Get-ZcValue -Zc $zc -Path "$script:ReplyRoot/protocol") -ne '1') {
            throw [System.InvalidOperationException]::new(
                "guest orchestration is not available for this VM ($script:ReplyRoot/protocol is absent: guest_orchestration is off for it, or the orchestrator is not running)")
        }
        return Wait-ZcReply -Zc $zc -Id $Id -Op $Op -Request $request -Wait:$Wait -TimeoutSec $TimeoutSec
    }
    finally {
        Close-ZcSession -Zc $zc
    }
}

function Wait-ZcReply {
    # Polls the reply, woken early by a XenStore watch when the drivers offer one.
    param($Zc, [string]$Id, [string]$Op, [string]$Request, [switch]$Wait, [int]$TimeoutSec)
    $statePath = "$script:ReplyRoot/reply/$Id/state"
    $source = "ZynClone-$Id"
    $watching = $false
    try {
        Invoke-CimMethod -InputObject $Zc.Session -MethodName 'SetWatch' -Arguments @{ PathName = $statePath } -ErrorAction Stop | Out-Null
        Register-CimIndicationEvent -Namespace 'root\wmi' -ClassName "$($Zc.Prefix)XenStoreWatchEvent" -SourceIdentifier $source -ErrorAction Stop
        $watching = $true
    }
    catch {
        $watching = $false
    }
    try {
        $deadline = (Get-Date).AddSeconds($TimeoutSec)
        $sentAt = [datetime]::MinValue
        $lastMessage = $null
        while ($true) {
            $reply = Get-ZcReply -Zc $Zc -Id $Id
            $state = $reply['state']
            if ($state -eq 'ok' -or $state -eq 'error') {
                break
            }
            if ($state -eq 'accepted' -or $state -eq 'progress') {
                if ($reply['message'] -and $reply['message'] -ne $lastMessage) {
                    Write-Verbose "${state}: $($reply['message'])"
                    $lastMessage = $reply['message']
                }
                if (-not $Wait) {
                    break
                }
            }
            elseif ($Request -and ((Get-Date) - $sentAt).TotalSeconds -ge $script:ResendAfterSec) {
                # Not read yet: a request written over before the orchestrator read it
                # is lost, so write it again (the same id never runs twice).
                Set-ZcValue -Zc $Zc -Path $script:RequestNode -Value $Request
                $sentAt = Get-Date
            }
            if ((Get-Date) -ge $deadline) {
                $what = if ($Wait) { 'final answer' } else { 'answer' }
                $last = if ($state) { " (last state: $state)" } else { '' }
                throw [System.TimeoutException]::new("no $what to request $Id ($Op) within ${TimeoutSec}s$last")
            }
            if ($watching) {
                Wait-Event -SourceIdentifier $source -Timeout 1 | Out-Null
                Remove-Event -SourceIdentifier $source -ErrorAction SilentlyContinue
            }
            else {
                Start-Sleep -Milliseconds 200
            }
        }
    }
    finally {
        if ($watching) {
            Unregister-Event -SourceIdentifier $source -ErrorAction SilentlyContinue
            Invoke-CimMethod -InputObject $Zc.Session -MethodName 'RemoveWatch' -Arguments @{ PathName = $statePath } -ErrorAction SilentlyContinue | Out-Null
        }
    }
    $result = [pscustomobject]@{
        Id         = $Id
        Op         = $Op
        State      = $state
        Code       = $reply['code']
        Message    = $reply['message']
        CloneState = $reply['clone-state']
        CloneName  = $reply['clone-name']
    }
    if ($state -eq 'error') {
        $record = [System.Management.Automation.ErrorRecord]::new(
            [System.InvalidOperationException]::new("$($result.Message) [$($result.Code)]"),
            $result.Code,
            [System.Management.Automation.ErrorCategory]::InvalidOperation,
            $result)
        throw $record
    }
    return $result
}

function Resolve-ZcTimeout {
    param([int]$TimeoutSec, [switch]$Wait)
    if ($TimeoutSec -gt 0) {
        return $TimeoutSec
    }
    if ($Wait) {
        return 600
    }
    return 30
}

function New-ZcClone {
    <#
    .SYNOPSIS
    Asks ZynClone for a clone of this VM.
    .DESCRIPTION
    Writes a create request into this VM's XenStore area (data/zynclone/request)
    and returns the reply once accepted, or with -Wait once the clone is made.
    Refusals and failures are terminating errors whose FullyQualifiedErrorId
    starts with the error code (CLONE_EXISTS, OP_NOT_ALLOWED, ...).
    .PARAMETER Kind
    offline, online (disk-only) or memory; default: the VM's clone_kind.
    .PARAMETER NoStart
    Leave the clone in state active (configured, not running).
    .PARAMETER Wait
    Wait until the operation has finished.
    .PARAMETER TimeoutSec
    Give up after this many seconds (default 600 with -Wait, else 30).
    .PARAMETER Id
    Request id (1-40 of A-Z a-z 0-9 _ -); the same id never runs twice.
    .EXAMPLE
    New-ZcClone -Kind memory -Wait
    #>
    [CmdletBinding()]
    param(
        [ValidateSet('offline', 'online', 'memory', IgnoreCase = $false)] [string]$Kind,
        [switch]$NoStart,
        [switch]$Wait,
        [ValidateRange(1, 86400)] [int]$TimeoutSec,
        [ValidatePattern('^[A-Za-z0-9_-]{1,40}$')] [string]$Id
    )
    $arguments = @()
    if ($Kind) {
        $arguments += "kind=$Kind"
    }
    if ($NoStart) {
        $arguments += 'start=no'
    }
    Invoke-ZcRequest -Op 'create' -Arguments $arguments -Id $Id -Wait:$Wait -TimeoutSec (Resolve-ZcTimeout -TimeoutSec $TimeoutSec -Wait:$Wait)
}

function Get-ZcClone {
    <#
    .SYNOPSIS
    The state of this VM's clone.
    .DESCRIPTION
    Asks for status and waits for the answer: State ok with CloneState
    running, active, inactive or none, and CloneName.
    .PARAMETER TimeoutSec
    Give up after this many seconds (default 30).
    .PARAMETER Id
    Request id (1-40 of A-Z a-z 0-9 _ -).
    .EXAMPLE
    (Get-ZcClone).CloneState
    #>
    [CmdletBinding()]
    param(
        [ValidateRange(1, 86400)] [int]$TimeoutSec = 30,
        [ValidatePattern('^[A-Za-z0-9_-]{1,40}$')] [string]$Id
    )
    Invoke-ZcRequest -Op 'status' -Id $Id -Wait -TimeoutSec $TimeoutSec
}

function Start-ZcClone {
    <#
    .SYNOPSIS
    Starts this VM's clone.
    .PARAMETER Wait
    Wait until the clone runs.
    .PARAMETER TimeoutSec
    Give up after this many seconds (default 600 with -Wait, else 30).
    .PARAMETER Id
    Request id (1-40 of A-Z a-z 0-9 _ -).
    .EXAMPLE
    Start-ZcClone -Wait
    #>
    [CmdletBinding()]
    param(
        [switch]$Wait,
        [ValidateRange(1, 86400)] [int]$TimeoutSec,
        [ValidatePattern('^[A-Za-z0-9_-]{1,40}$')] [string]$Id
    )
    Invoke-ZcRequest -Op 'start' -Id $Id -Wait:$Wait -TimeoutSec (Resolve-ZcTimeout -TimeoutSec $TimeoutSec -Wait:$Wait)
}

function Stop-ZcClone {
    <#
    .SYNOPSIS
    Shuts this VM's clone down (it stays, in state active).
    .PARAMETER Force
    Destroy the clone's domain at once instead of shutting it down.
    .PARAMETER Wait
    Wait until the clone has stopped.
    .PARAMETER TimeoutSec
    Give up after this many seconds (default 600 with -Wait, else 30).
    .PARAMETER Id
    Request id (1-40 of A-Z a-z 0-9 _ -).
    .EXAMPLE
    Stop-ZcClone -Force -Wait
    #>
    [CmdletBinding()]
    param(
        [switch]$Force,
        [switch]$Wait,
        [ValidateRange(1, 86400)] [int]$TimeoutSec,
        [ValidatePattern('^[A-Za-z0-9_-]{1,40}$')] [string]$Id
    )
    $arguments = @()
    if ($Force) {
        $arguments += 'force=yes'
    }
    Invoke-ZcRequest -Op 'stop' -Arguments $arguments -Id $Id -Wait:$Wait -TimeoutSec (Resolve-ZcTimeout -TimeoutSec $TimeoutSec -Wait:$Wait)
}

function Remove-ZcClone {
    <#
    .SYNOPSIS
    Deletes this VM's clone: its domain, volumes and lockdowns.
    .PARAMETER Wait
    Wait until the clone is gone.
    .PARAMETER TimeoutSec
    Give up after this many seconds (default 600 with -Wait, else 30).
    .PARAMETER Id
    Request id (1-40 of A-Z a-z 0-9 _ -).
    .EXAMPLE
    Remove-ZcClone -Wait
    #>
    [CmdletBinding()]
    param(
        [switch]$Wait,
        [ValidateRange(1, 86400)] [int]$TimeoutSec,
        [ValidatePattern('^[A-Za-z0-9_-]{1,40}$')] [string]$Id
    )
    Invoke-ZcRequest -Op 'remove' -Id $Id -Wait:$Wait -TimeoutSec (Resolve-ZcTimeout -TimeoutSec $TimeoutSec -Wait:$Wait)
}

function Switch-ZcVolume {
    <#
    .SYNOPSIS
    Moves a shared volume of this VM to its clone, or back.
    .DESCRIPTION
    Asks ZynClone to hand the shared volume Vdev (one of the VM's
    shared_volumes) to the clone or back to this VM. A volume never has two
    writers: the VM that holds it must let go of it first (take its disk
    offline, e.g. Set-Disk -IsOffline $true), it is never forced; otherwise the
    request fails with VOLUME_GUEST_REFUSED and the volume stays where it is.
    Refusals and failures are terminating errors whose FullyQualifiedErrorId
    starts with the error code (VOLUME_NOT_SHARED, VOLUME_REFUSED, ...), so a
    command after Switch-ZcVolume -Wait runs only once the volume has moved.
    .PARAMETER Vdev
    The volume's virtual device as the VM's xl configuration names it (xvdb,
    hdb, sdb...; lower case).
    .PARAMETER To
    clone (hand it to the clone) or original (give it back to this VM).
    .PARAMETER Wait
    Wait until the volume has moved.
    .PARAMETER TimeoutSec
    Give up after this many seconds (default 600 with -Wait, else 30).
    .PARAMETER Id
    Request id (1-40 of A-Z a-z 0-9 _ -); the same id never runs twice.
    .EXAMPLE
    Switch-ZcVolume xvdb -To clone -Wait
    .EXAMPLE
    Set-Disk -Number 1 -IsOffline $true; Switch-ZcVolume -Vdev xvdb -To clone -Wait
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)] [ValidatePattern('^(xvd|hd|sd)[a-z]{1,2}[0-9]{0,2}$', Options = 'None')] [string]$Vdev,
        [Parameter(Mandatory)] [ValidateSet('clone', 'original', IgnoreCase = $false)] [string]$To,
        [switch]$Wait,
        [ValidateRange(1, 86400)] [int]$TimeoutSec,
        [ValidatePattern('^[A-Za-z0-9_-]{1,40}$')] [string]$Id
    )
    $arguments = @("vdev=$Vdev", "to=$To")
    Invoke-ZcRequest -Op 'switch-volume' -Arguments $arguments -Id $Id -Wait:$Wait -TimeoutSec (Resolve-ZcTimeout -TimeoutSec $TimeoutSec -Wait:$Wait)
}

function Wait-ZcRequest {
    <#
    .SYNOPSIS
    Waits for the final answer to an earlier request.
    .DESCRIPTION
    For a request made without -Wait: returns its reply once ok, or throws
    its error; throws a TimeoutException when no final answer comes in time.
    .PARAMETER Id
    The request's id (the Id of the object the request returned).
    .PARAMETER TimeoutSec
    Give up after this many seconds (default 600).
    .EXAMPLE
    $r = New-ZcClone; Wait-ZcRequest -Id $r.Id -TimeoutSec 300
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)] [ValidatePattern('^[A-Za-z0-9_-]{1,40}$')] [string]$Id,
        [ValidateRange(1, 86400)] [int]$TimeoutSec = 600
    )
    $zc = Open-ZcSession
    try {
        $op = Get-ZcValue -Zc $zc -Path "$script:ReplyRoot/reply/$Id/op"
        if ($null -eq $op) {
            throw [System.InvalidOperationException]::new("no reply to request $Id (unknown id, or too old: the last 16 are kept)")
        }
        # No request to write again: an empty -Request ([string] turns $null into '').
        Wait-ZcReply -Zc $zc -Id $Id -Op $op -Request '' -Wait -TimeoutSec $TimeoutSec
    }
    finally {
        Close-ZcSession -Zc $zc
    }
}

Export-ModuleMember -Function @('New-ZcClone', 'Get-ZcClone', 'Start-ZcClone', 'Stop-ZcClone', 'Remove-ZcClone', 'Switch-ZcVolume', 'Wait-ZcRequest')
