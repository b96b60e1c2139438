// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IPocMarketplace} from "../interfaces/IPocMarketplace.sol";

/// @title ReentrantClaimer
/// @notice Test-only attacker: a trainer contract whose `receive` re-enters `claim` (or `claimTo`)
/// to try to withdraw its credit twice. Used by the reentrancy tests; never deployed in production.
contract ReentrantClaimer {
    IPocMarketplace public immutable market;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;
    bool public useClaimTo;

    constructor(IPocMarketplace market_) {
        market = market_;
    }

    /// @notice Registers this contract as a trainer (forwarding the stake).
    function register(uint256 projectId) external payable {
        market.register{value: msg.value}(projectId);
    }

    /// @notice Submits an update as this contract.
    function submit(uint256 projectId, uint32 round, string calldata cid, bytes32 commitment) external {
        market.submit(projectId, round, cid, commitment, bytes32(0));
    }

    /// @notice Releases this contract's stake after the project ended.
    function releaseStake(uint256 projectId) external {
        market.releaseStake(projectId);
    }

    /// @notice Starts the attack.
    function attack(bool viaClaimTo) external {
        useClaimTo = viaClaimTo;
        market.claim();
    }

    receive() external payable {
        if (reentryAttempts > 0) return;
        reentryAttempts += 1;
        // Swallow the failure so the outer claim can complete; record whether the re-entry paid out.
        if (useClaimTo) {
            try market.claimTo(payable(address(this))) returns (uint256 amount) {
                reentrySucceeded = amount > 0;
            } catch {}
        } else {
            try market.claim() returns (uint256 amount) {
                reentrySucceeded = amount > 0;
            } catch {}
        }
    }
}
